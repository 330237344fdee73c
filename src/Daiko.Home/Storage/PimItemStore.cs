using System.Text;
using Daiko.Home.Pim;
using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>
/// PIM items with optimistic concurrency: each change names the version it was based on; the store
/// applies it as the next store-wide revision, or answers a conflict with the current item.
/// </summary>
public interface IPimStore
{
    /// <summary>
    /// Applies <paramref name="changes"/> in one transaction (in order, one revision each) and returns
    /// their results and every item changed after <paramref name="sinceRevision"/> that the caller did
    /// not just write itself, one page at a time: when those items exceed <paramref name="pageBytes"/>
    /// the result holds the first of them (at least one), its revision is the last one returned and
    /// <see cref="PimSyncResult.More"/> is set.
    /// </summary>
    /// <param name="limits">
    /// what the store may hold (<see cref="PimLimits.Default"/> if null): a change past them is <see cref="PimChangeOutcome.Rejected"/>,
    /// except that a new item past the rows first makes room by letting go of the oldest marks of deleted items
    /// (<see cref="PimSyncResult.Horizon"/>).
    /// </param>
    /// <param name="horizonSeen">
    /// the <see cref="PimSyncResult.Horizon"/> the caller last got (0 for none yet): when marks the caller may not have seen
    /// were let go since, the result starts again from the first revision and says so (<see cref="PimSyncResult.Reset"/>).
    /// Null: a caller that knows nothing of horizons (a terminal from before them), which is never sent back, since it
    /// could not act on it (it would page from the first revision without end).
    /// </param>
    Task<PimSyncResult> SyncAsync(long sinceRevision, IReadOnlyList<PimChange> changes, DateTimeOffset now, int pageBytes = int.MaxValue,
        PimLimits? limits = null, long? horizonSeen = null, CancellationToken cancellationToken = default);

    /// <summary>Every live (not deleted) item of one kind, ordered by id.</summary>
    Task<IReadOnlyList<PimItem>> ListAsync(PimKind kind, CancellationToken cancellationToken = default);
}

public sealed class SqlPimStore(IHomeStore store) : IPimStore
{
    internal static readonly Migration Migration = new("pim_items/1", """
        CREATE TABLE IF NOT EXISTS pim_items (id TEXT PRIMARY KEY, kind INTEGER NOT NULL, version {bigint} NOT NULL,
            revision {bigint} NOT NULL, deleted INTEGER NOT NULL, body TEXT NOT NULL, modified_at TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS pim_items_revision ON pim_items(revision);
        """);

    /// <summary>What the store holds, in one row beside the items: counted once from the items there when it is made.</summary>
    internal static readonly Migration UsageMigration = new("pim_usage/1", """
        CREATE TABLE IF NOT EXISTS pim_usage (id INTEGER PRIMARY KEY CHECK (id = 1), item_rows {bigint} NOT NULL, body_bytes {bigint} NOT NULL);
        INSERT INTO pim_usage (id, item_rows, body_bytes) SELECT 1, COUNT(*), COALESCE(SUM(octet_length(body)), 0) FROM pim_items;
        """, Migration);

    /// <summary>
    /// The usage row kept by triggers on the items (so whatever writes an item, an older node's code included, counts),
    /// counted again from the items with writers held off (PostgreSQL: a lock on the table) as the triggers are made.
    /// A sync reads the row at its start, so checking the limits reads no body.
    /// </summary>
    internal static readonly Migration UsageTriggersMigration = new("pim_usage/2", """
        CREATE TRIGGER IF NOT EXISTS pim_items_inserted AFTER INSERT ON pim_items BEGIN
            UPDATE pim_usage SET item_rows = item_rows + 1, body_bytes = body_bytes + octet_length(NEW.body) WHERE id = 1; END;
        CREATE TRIGGER IF NOT EXISTS pim_items_updated AFTER UPDATE ON pim_items BEGIN
            UPDATE pim_usage SET body_bytes = body_bytes + octet_length(NEW.body) - octet_length(OLD.body) WHERE id = 1; END;
        CREATE TRIGGER IF NOT EXISTS pim_items_deleted AFTER DELETE ON pim_items BEGIN
            UPDATE pim_usage SET item_rows = item_rows - 1, body_bytes = body_bytes - octet_length(OLD.body) WHERE id = 1; END;
        UPDATE pim_usage SET item_rows = (SELECT COUNT(*) FROM pim_items), body_bytes = (SELECT COALESCE(SUM(octet_length(body)), 0) FROM pim_items) WHERE id = 1;
        """, UsageMigration, PostgresText: """
        LOCK TABLE pim_items IN SHARE ROW EXCLUSIVE MODE;
        CREATE OR REPLACE FUNCTION pim_items_counted() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    UPDATE pim_usage SET item_rows = item_rows + 1, body_bytes = body_bytes + octet_length(NEW.body) WHERE id = 1;
                ELSIF TG_OP = 'UPDATE' THEN
                    UPDATE pim_usage SET body_bytes = body_bytes + octet_length(NEW.body) - octet_length(OLD.body) WHERE id = 1;
                ELSIF TG_OP = 'DELETE' THEN
                    UPDATE pim_usage SET item_rows = item_rows - 1, body_bytes = body_bytes - octet_length(OLD.body) WHERE id = 1;
                ELSE
                    UPDATE pim_usage SET item_rows = 0, body_bytes = 0 WHERE id = 1;
                END IF;
                RETURN NULL;
            END $f$;
        CREATE TRIGGER pim_items_counted AFTER INSERT OR UPDATE OR DELETE ON pim_items FOR EACH ROW EXECUTE FUNCTION pim_items_counted();
        CREATE TRIGGER pim_items_truncated AFTER TRUNCATE ON pim_items FOR EACH STATEMENT EXECUTE FUNCTION pim_items_counted();
        UPDATE pim_usage SET item_rows = (SELECT COUNT(*) FROM pim_items), body_bytes = (SELECT COALESCE(SUM(octet_length(body)), 0) FROM pim_items) WHERE id = 1;
        """);

    /// <summary>
    /// How far the marks of deleted items were let go (the revision of the newest one gone; 0 for none), and an index of
    /// the marks, so that finding the oldest reads no live item.
    /// </summary>
    internal static readonly Migration HorizonMigration = new("pim_usage/3", """
        ALTER TABLE pim_usage ADD COLUMN purged_through {bigint} NOT NULL DEFAULT 0;
        CREATE INDEX IF NOT EXISTS pim_items_marks ON pim_items(revision) WHERE deleted = 1;
        """, UsageTriggersMigration);

    /// <summary>
    /// How many of the oldest marks of deleted items go at once when a new item finds the rows full: a hundredth of the
    /// rows (at least one), so that the horizon, which sends every terminal behind it back to the first revision, moves
    /// once per that many new items rather than with each.
    /// </summary>
    internal static int MarksLetGo(PimLimits limits) => Math.Max(1, limits.MaxItems / 100);

    /// <summary>Runs between a sync's commit and its page read (a test's way to let another sync in there).</summary>
    internal Func<Task>? BeforePageRead { get; set; }

    private const string Columns = "SELECT id, kind, version, revision, deleted, body, modified_at FROM pim_items";

    /// <summary>Rows read for one page at most (a page is bounded by bytes first; tiny items are bounded by this).</summary>
    internal const int PageRows = 2048;

    public async Task<PimSyncResult> SyncAsync(long sinceRevision, IReadOnlyList<PimChange> changes, DateTimeOffset now, int pageBytes = int.MaxValue,
        PimLimits? limits = null, long? horizonSeen = null, CancellationToken cancellationToken = default)
    {
        limits ??= PimLimits.Default;
        await using var connection = await store.OpenAsync(HorizonMigration, cancellationToken);
        // Revisions are assigned read-modify-write: one writer at a time, across nodes too.
        await using var transaction = await store.BeginExclusiveAsync(connection, "pim_items", cancellationToken);
        var revision = Convert.ToInt64(await ScalarAsync(connection, transaction, "SELECT COALESCE(MAX(revision), 0) FROM pim_items", cancellationToken),
            System.Globalization.CultureInfo.InvariantCulture);
        // What the store holds, read inside the exclusive transaction: every node's writes are in it.
        // The triggers keep the row; this sync tallies its own changes as it goes.
        var (rowsHeld, bytesHeld, horizon) = await UsageAsync(connection, transaction, cancellationToken);
        var results = new List<PimChangeResult>(changes.Count);
        var written = new HashSet<string>(StringComparer.Ordinal);
        foreach (var change in changes)
        {
            var current = (await ReadAllAsync(connection, transaction, Columns + " WHERE id = @id", Item, cancellationToken, ("@id", change.Id))).SingleOrDefault();
            var currentVersion = current?.Version ?? 0;
            if (change.BaseVersion != currentVersion || (current is not null && current.Kind != change.Kind))
            {
                results.Add(new PimChangeResult(change.Id, PimChangeOutcome.Conflict, current,
                    $"item '{change.Id}' is at version {currentVersion} on the home server, the edit was based on version {change.BaseVersion}"));
                continue;
            }
            if (current is null && change.Delete)
            {
                // Deleting what the store never held: no terminal can have it, so nothing is written (not even a tombstone).
                results.Add(new PimChangeResult(change.Id, PimChangeOutcome.Applied, null, null));
                continue;
            }
            var body = change.Delete ? "" : change.Body;
            var moreBytes = (long)Encoding.UTF8.GetByteCount(body) - (current is null ? 0 : Encoding.UTF8.GetByteCount(current.Body));
            if (current is null && rowsHeld + 1 > limits.MaxItems
                && await LetGoOfOldestMarksAsync(connection, transaction, below: revision, MarksLetGo(limits), cancellationToken) is ({ } through, var gone))
            {
                // The oldest marks go (never a live item, never the newest row, so the newest revision stays); a terminal
                // that had not seen them is told to start again (the horizon), not left holding an item deleted elsewhere.
                horizon = through;
                rowsHeld -= gone;
            }
            if (current is null && rowsHeld + 1 > limits.MaxItems)
            {
                results.Add(new PimChangeResult(change.Id, PimChangeOutcome.Rejected, null,
                    $"the PIM store is full: it holds at most {limits.MaxItems:N0} items; delete items to make room"));
                continue;
            }
            if (moreBytes > 0 && bytesHeld + moreBytes > limits.MaxBodyBytes)
            {
                results.Add(new PimChangeResult(change.Id, PimChangeOutcome.Rejected, current,
                    $"the PIM store is full: its items hold at most {Mebibytes(limits.MaxBodyBytes)} in all ({Mebibytes(bytesHeld)} now); delete or shorten items to make room"));
                continue;
            }
            if (current is null) rowsHeld++;
            bytesHeld += moreBytes;
            revision++;
            // Once marks have gone, an id may come back that a stale terminal still holds at some old version: a new item
            // then starts at its revision, above any version an item of the store ever had (each change of an item takes
            // a revision of its own), so that terminal's edit is a conflict, not applied to the new item.
            var version = current is null && horizon > 0 ? revision : currentVersion + 1;
            var item = new PimItem(change.Id, change.Kind, version, revision, change.Delete, body, now);
            await ExecuteAsync(connection, transaction, """
                INSERT INTO pim_items (id, kind, version, revision, deleted, body, modified_at) VALUES (@id, @kind, @version, @revision, @deleted, @body, @at)
                ON CONFLICT(id) DO UPDATE SET kind = @kind, version = @version, revision = @revision, deleted = @deleted, body = @body, modified_at = @at
                """, cancellationToken, ("@id", item.Id), ("@kind", (int)item.Kind), ("@version", item.Version), ("@revision", item.Revision),
                ("@deleted", item.Deleted ? 1 : 0), ("@body", item.Body), ("@at", Text(item.ModifiedAt)));
            written.Add(item.Id);
            results.Add(new PimChangeResult(change.Id, PimChangeOutcome.Applied, item, null));
        }
        await transaction.CommitAsync(cancellationToken);
        // What changed since, read after the commit and one page at a time: the store's write lock (on SQLite the whole
        // database's) is not held while a device pages through every item, and no more than a page is read into memory.
        // Items written by another after this commit may come too; the revision returned covers them. Marks let go by
        // another sync meanwhile could be missing from the page: the horizon is read again after it, and the page read
        // again if it moved (it moves once per a hundredth of the rows taken by new items at the limit).
        for (var attempt = 1; ; attempt++)
        {
            // Marks the caller may not have seen were let go (since its last sync, or before its first): it starts again
            // from the first revision. A caller from revision 0 already reads everything there is.
            var reset = horizonSeen is { } seen && sinceRevision > 0 && sinceRevision < horizon && seen < horizon;
            if (BeforePageRead is { } beforeRead) await beforeRead();
            var synced = await PageAsync(connection, reset ? 0 : sinceRevision, revision, written, pageBytes, cancellationToken);
            var after = (await ReadAllAsync(connection, null, "SELECT purged_through FROM pim_usage WHERE id = 1", r => r.Long(0), cancellationToken)).Single();
            if (after == horizon) return synced with { Results = results, Horizon = horizon, Reset = reset };
            if (attempt == 4)
            {
                // Marks went during every read: the results go back with no page, and the caller, told to sync again from
                // where it was with the horizon it had, is judged afresh then.
                return new PimSyncResult(results, [], sinceRevision, More: true) { Horizon = horizonSeen ?? 0 };
            }
            horizon = after;
        }
    }

    private static async Task<PimSyncResult> PageAsync(System.Data.Common.DbConnection connection,
        long since, long revision, HashSet<string> written, int pageBytes, CancellationToken cancellationToken)
    {
        var page = new List<PimItem>();
        var bytes = 0L;
        // At most PageRows rows leave the database for a page (PostgreSQL would otherwise send every later row to be skipped).
        var (rows, lastRead) = (0, since);
        await using (var command = Command(connection, null, Columns + $" WHERE revision > @r ORDER BY revision LIMIT {PageRows}", ("@r", since)))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                rows++;
                var item = Item(reader);
                lastRead = item.Revision;
                if (item.Revision <= revision && written.Contains(item.Id)) continue;
                var size = System.Text.Encoding.UTF8.GetByteCount(item.Body) + item.Id.Length + 32;
                if (page.Count > 0 && bytes + size > pageBytes) return new PimSyncResult([], page, page[^1].Revision, More: true);
                page.Add(item);
                bytes += size;
            }
        }
        // A page that ended at the row limit may have more behind it.
        if (rows == PageRows) return new PimSyncResult([], page, lastRead, More: true);
        return new PimSyncResult([], page, Math.Max(revision, page.Count > 0 ? page[^1].Revision : 0));
    }

    /// <summary>
    /// Lets go of up to <paramref name="count"/> of the oldest marks of deleted items below revision <paramref name="below"/>
    /// (the newest row always stays, so the next revision never goes back) and records how far: the revision of the newest
    /// one gone and how many went, or null when there was none to let go.
    /// </summary>
    private static async Task<(long Through, long Gone)?> LetGoOfOldestMarksAsync(System.Data.Common.DbConnection connection,
        System.Data.Common.DbTransaction transaction, long below, int count, CancellationToken cancellationToken)
    {
        var oldest = await ReadAllAsync(connection, transaction,
            $"SELECT revision FROM pim_items WHERE deleted = 1 AND revision < @below ORDER BY revision LIMIT {count}",
            r => r.Long(0), cancellationToken, ("@below", below));
        if (oldest.Count == 0) return null;
        var through = oldest[^1];
        // Revisions are unique: these are exactly the marks read above.
        await ExecuteAsync(connection, transaction, "DELETE FROM pim_items WHERE deleted = 1 AND revision <= @through", cancellationToken, ("@through", through));
        await ExecuteAsync(connection, transaction, "UPDATE pim_usage SET purged_through = @through WHERE id = 1", cancellationToken, ("@through", through));
        return (through, oldest.Count);
    }

    private static async Task<(long Rows, long Bytes, long Horizon)> UsageAsync(System.Data.Common.DbConnection connection, System.Data.Common.DbTransaction transaction,
        CancellationToken cancellationToken)
    {
        var usage = await ReadAllAsync(connection, transaction, "SELECT item_rows, body_bytes, purged_through FROM pim_usage WHERE id = 1",
            r => (r.Long(0), r.Long(1), r.Long(2)), cancellationToken);
        return usage.Single();
    }

    private static string Mebibytes(long bytes) => bytes < 1024 * 1024 ? $"{bytes:N0} bytes" : $"{bytes / (1024.0 * 1024):0.#} MiB";

    public async Task<IReadOnlyList<PimItem>> ListAsync(PimKind kind, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return await ReadAllAsync(connection, null, Columns + " WHERE kind = @k AND deleted = 0 ORDER BY id", Item, cancellationToken, ("@k", (int)kind));
    }

    private static PimItem Item(System.Data.Common.DbDataReader r) =>
        new(r.GetString(0), (PimKind)r.Long(1), r.Long(2), r.Long(3), r.Long(4) != 0, r.GetString(5), r.Time(6));
}
