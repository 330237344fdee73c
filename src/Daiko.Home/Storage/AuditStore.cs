using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>One audited event: who, what, with which market and mode, and the outcome. Never a secret.</summary>
public sealed record AuditEntry(DateTimeOffset At, string? Device, string Action, string? Market, string? Mode, string Outcome);

/// <summary>
/// The audit log: appended to, never edited; lines past the retention (<see cref="AuditRetention"/>) are
/// removed oldest first. An append returns once it is committed; appends made at once share a commit.
/// </summary>
public interface IAuditStore
{
    Task AppendAsync(AuditEntry entry, CancellationToken cancellationToken = default);

    /// <summary>The newest <paramref name="limit"/> entries, newest first (in the order they were appended).</summary>
    Task<IReadOnlyList<AuditEntry>> RecentAsync(int limit, CancellationToken cancellationToken = default);

    /// <summary>
    /// Removes the oldest entries: those appended before <paramref name="before"/>, and those beyond the
    /// newest <paramref name="keepAtMost"/>; oldest first, in short transactions (appends wait for one
    /// batch at most). Returns how many were removed.
    /// </summary>
    Task<long> PruneAsync(DateTimeOffset before, long keepAtMost, CancellationToken cancellationToken = default);
}

/// <summary>
/// How long the audit log keeps its lines: a year, and at most a million (the oldest go first; a busy
/// owner's devices add a line a session). <c>home serve --audit-days/--audit-max-lines</c>.
/// </summary>
public sealed record AuditRetention(int Days = 365, long MaxLines = 1_000_000)
{
    public static AuditRetention Default { get; } = new();

    /// <summary>How often the server prunes.</summary>
    public TimeSpan Every { get; init; } = TimeSpan.FromHours(1);

    /// <summary>When the server first prunes after it starts.</summary>
    public TimeSpan FirstAfter { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>The audit line a prune leaves when it removed any (what the owner reads in the log).</summary>
    public string Outcome(long removed) => $"{removed} line(s) removed: older than {Days} day(s), or beyond the newest {MaxLines}";
}

public sealed class SqlAuditStore(IHomeStore store) : IAuditStore
{
    internal static readonly Migration Migration = new("audit/1", """
        CREATE TABLE IF NOT EXISTS audit (id {id}, at TEXT NOT NULL, device TEXT,
            action TEXT NOT NULL, market TEXT, mode TEXT, outcome TEXT NOT NULL)
        """);

    private int _migrated;

    /// <summary>Appends the entry in the store's next grouped commit; returns once that commit is durable.</summary>
    public async Task AppendAsync(AuditEntry entry, CancellationToken cancellationToken = default)
    {
        if (Volatile.Read(ref _migrated) == 0)
        {
            await using (await store.OpenAsync(Migration, cancellationToken)) { }
            Volatile.Write(ref _migrated, 1);
        }
        await store.Writes.WriteAsync((connection, transaction) =>
            ExecuteAsync(connection, transaction, "INSERT INTO audit(at, device, action, market, mode, outcome) VALUES(@t, @d, @a, @m, @o, @r)", CancellationToken.None,
                ("@t", Text(entry.At)), ("@d", entry.Device), ("@a", entry.Action), ("@m", entry.Market), ("@o", entry.Mode), ("@r", entry.Outcome)), cancellationToken);
    }

    /// <summary>Rows looked at (and at most removed) in one transaction of <see cref="PruneAsync"/>.</summary>
    internal const int PruneBatch = 5000;

    public async Task<long> PruneAsync(DateTimeOffset before, long keepAtMost, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(keepAtMost);
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        // Everything up to this id is beyond the newest keepAtMost (ids grow in the order lines are appended).
        var beyond = await ScalarAsync(connection, null, "SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET @k", cancellationToken, ("@k", keepAtMost));
        var beyondId = beyond is null or DBNull ? long.MinValue : Convert.ToInt64(beyond, System.Globalization.CultureInfo.InvariantCulture);
        long removed = 0;
        while (true)
        {
            // The oldest batch: remove up to the last line that is too old or beyond the count, and stop at
            // the first one that is neither (lines are appended in time order).
            var oldest = await ReadAllAsync(connection, null, "SELECT id, at FROM audit ORDER BY id LIMIT @n",
                r => (Id: r.GetInt64(0), At: r.Time(1)), cancellationToken, ("@n", PruneBatch));
            long? upTo = null;
            var stopped = false;
            foreach (var (id, at) in oldest)
            {
                if (id > beyondId && at >= before)
                {
                    stopped = true;
                    break;
                }
                upTo = id;
            }
            if (upTo is not { } last) return removed;
            removed += await ExecuteAsync(connection, null, "DELETE FROM audit WHERE id <= @id", cancellationToken, ("@id", last));
            if (stopped || oldest.Count < PruneBatch) return removed;
        }
    }

    public async Task<IReadOnlyList<AuditEntry>> RecentAsync(int limit, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return await ReadAllAsync(connection, null, "SELECT at, device, action, market, mode, outcome FROM audit ORDER BY id DESC LIMIT @l",
            r => new AuditEntry(r.Time(0), r.NullableString(1), r.GetString(2), r.NullableString(3), r.NullableString(4), r.GetString(5)),
            cancellationToken, ("@l", limit));
    }
}
