using Microsoft.Data.Sqlite;

namespace Daiko.Home.Pim;

/// <summary>
/// Secure PIM storage (F17): the address book, schedule and to-do list live on the home server and
/// terminals synchronise with it over the control channel. Sync is two-way and incremental: a terminal
/// sends its edits with the version each was based on and the last revision it saw; it gets back the
/// outcome of each edit and every change newer than that revision. An edit based on a stale version
/// is a conflict, never a silent overwrite. Deletions are kept as tombstones so that every terminal
/// learns of them.
/// </summary>
public sealed class PimStore
{
    public const int MaxBodyBytes = 64 * 1024;

    private readonly string _connectionString;
    private readonly TimeProvider _time;

    public PimStore(string databasePath, TimeProvider? time = null)
    {
        _connectionString = Storage.HomeDatabase.ConnectionString(databasePath);
        _time = time ?? TimeProvider.System;
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS pim_items (
                id TEXT PRIMARY KEY,
                kind INTEGER NOT NULL,
                version INTEGER NOT NULL,
                revision INTEGER NOT NULL,
                deleted INTEGER NOT NULL,
                body TEXT NOT NULL,
                modified_at TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS pim_items_revision ON pim_items(revision);
            """;
        command.ExecuteNonQuery();
    }

    private SqliteConnection Open() => Storage.HomeDatabase.Open(_connectionString);

    /// <summary>
    /// Applies the terminal's changes atomically and returns what it has not seen yet, one page at a
    /// time: when the newer items exceed <paramref name="pageBytes"/> the result holds the first of them
    /// (at least one), its revision is the last one returned and <see cref="PimSyncResult.More"/> is set.
    /// </summary>
    public PimSyncResult Sync(long sinceRevision, IReadOnlyList<PimChange> changes, int pageBytes = int.MaxValue)
    {
        using var connection = Open();
        using var transaction = connection.BeginTransaction(System.Data.IsolationLevel.Serializable);
        var results = new List<PimChangeResult>(changes.Count);
        var revision = CurrentRevision(connection, transaction);
        var appliedIds = new HashSet<string>(StringComparer.Ordinal);
        foreach (var change in changes)
        {
            var rejection = Validate(change);
            if (rejection is not null)
            {
                results.Add(new PimChangeResult(change.Id, PimChangeOutcome.Rejected, null, rejection));
                continue;
            }
            var current = Find(connection, transaction, change.Id);
            var currentVersion = current?.Version ?? 0;
            if (change.BaseVersion != currentVersion || (current is not null && current.Kind != change.Kind))
            {
                results.Add(new PimChangeResult(change.Id, PimChangeOutcome.Conflict, current,
                    $"item '{change.Id}' is at version {currentVersion} on the home server, the edit was based on version {change.BaseVersion}"));
                continue;
            }
            revision++;
            var item = new PimItem(change.Id, change.Kind, currentVersion + 1, revision, change.Delete, change.Delete ? "" : change.Body, _time.GetUtcNow());
            Upsert(connection, transaction, item);
            appliedIds.Add(item.Id);
            results.Add(new PimChangeResult(change.Id, PimChangeOutcome.Applied, item, null));
        }
        var newer = new List<PimItem>();
        var bytes = 0L;
        var more = false;
        foreach (var item in ChangesSince(connection, transaction, sinceRevision).Where(i => !appliedIds.Contains(i.Id)))
        {
            var size = System.Text.Encoding.UTF8.GetByteCount(item.Body) + item.Id.Length + 32;
            if (newer.Count > 0 && bytes + size > pageBytes)
            {
                more = true;
                break;
            }
            newer.Add(item);
            bytes += size;
        }
        transaction.Commit();
        return new PimSyncResult(results, newer, more ? newer[^1].Revision : revision, more);
    }

    /// <summary>Every live (not deleted) item of one kind.</summary>
    public IReadOnlyList<PimItem> List(PimKind kind)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, kind, version, revision, deleted, body, modified_at FROM pim_items WHERE kind = $k AND deleted = 0 ORDER BY id";
        command.Parameters.AddWithValue("$k", (int)kind);
        return Read(command);
    }

    private static string? Validate(PimChange change)
    {
        if (string.IsNullOrWhiteSpace(change.Id) || change.Id.Length > 128)
            return "an item id must be 1 to 128 characters";
        if (!Enum.IsDefined(change.Kind))
            return "unknown item kind";
        if (change.BaseVersion < 0)
            return "a base version cannot be negative";
        if (!change.Delete && System.Text.Encoding.UTF8.GetByteCount(change.Body) > MaxBodyBytes)
            return $"an item body is limited to {MaxBodyBytes / 1024} KiB";
        return null;
    }

    private static long CurrentRevision(SqliteConnection connection, SqliteTransaction transaction)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT COALESCE(MAX(revision), 0) FROM pim_items";
        return (long)command.ExecuteScalar()!;
    }

    private static PimItem? Find(SqliteConnection connection, SqliteTransaction transaction, string id)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT id, kind, version, revision, deleted, body, modified_at FROM pim_items WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        return Read(command).SingleOrDefault();
    }

    private static List<PimItem> ChangesSince(SqliteConnection connection, SqliteTransaction transaction, long revision)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT id, kind, version, revision, deleted, body, modified_at FROM pim_items WHERE revision > $r ORDER BY revision";
        command.Parameters.AddWithValue("$r", revision);
        return Read(command);
    }

    private static void Upsert(SqliteConnection connection, SqliteTransaction transaction, PimItem item)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO pim_items (id, kind, version, revision, deleted, body, modified_at)
            VALUES ($id, $kind, $version, $revision, $deleted, $body, $at)
            ON CONFLICT(id) DO UPDATE SET kind = $kind, version = $version, revision = $revision,
                deleted = $deleted, body = $body, modified_at = $at
            """;
        command.Parameters.AddWithValue("$id", item.Id);
        command.Parameters.AddWithValue("$kind", (int)item.Kind);
        command.Parameters.AddWithValue("$version", item.Version);
        command.Parameters.AddWithValue("$revision", item.Revision);
        command.Parameters.AddWithValue("$deleted", item.Deleted ? 1 : 0);
        command.Parameters.AddWithValue("$body", item.Body);
        command.Parameters.AddWithValue("$at", item.ModifiedAt.ToString("O"));
        command.ExecuteNonQuery();
    }

    private static List<PimItem> Read(SqliteCommand command)
    {
        var items = new List<PimItem>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            items.Add(new PimItem(reader.GetString(0), (PimKind)reader.GetInt32(1), reader.GetInt64(2), reader.GetInt64(3),
                reader.GetInt32(4) != 0, reader.GetString(5), DateTimeOffset.Parse(reader.GetString(6), System.Globalization.CultureInfo.InvariantCulture)));
        }
        return items;
    }
}
