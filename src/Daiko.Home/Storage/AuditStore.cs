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
    /// The whole log searched (not only its newest lines): entries matching <paramref name="filter"/>, newest first,
    /// <paramref name="take"/> of them after skipping <paramref name="skip"/>, and how many match in all.
    /// </summary>
    Task<(IReadOnlyList<AuditEntry> Entries, long Total)> SearchAsync(AuditFilter filter, int skip, int take, CancellationToken cancellationToken = default);

    /// <summary>
    /// Removes the oldest entries: those beyond the newest <paramref name="keepAtMost"/>, and those
    /// appended before <paramref name="before"/> unless they are among the newest
    /// <paramref name="keepNewest"/> (a clock set years ahead cannot empty the log); oldest first, in
    /// short transactions (appends wait for one batch at most).
    /// </summary>
    Task<AuditPrune> PruneAsync(DateTimeOffset before, long keepAtMost, long keepNewest, CancellationToken cancellationToken = default);
}

/// <summary>
/// What the owner searches the audit log for: lines of any of <paramref name="DeviceIds"/> (null: any line), and whose market
/// and outcome contain the given text (case aside; empty: any).
/// </summary>
public sealed record AuditFilter(IReadOnlyCollection<string>? DeviceIds = null, string Market = "", string Outcome = "");

/// <summary>What a prune removed: how many lines, and how many of them went for the count alone, before their time.</summary>
public sealed record AuditPrune(long Removed, long BeforeTheirTime);

/// <summary>
/// How long the audit log keeps its lines: a year, and at most a million (the oldest go first; a busy
/// owner's devices add a line a session). <c>home serve --audit-days/--audit-max-lines</c>.
/// </summary>
public sealed record AuditRetention(int Days = 365, long MaxLines = 1_000_000)
{
    public static AuditRetention Default { get; } = new();

    /// <summary>The longest retention in days (a hundred years): more is "keep", and a date that far back is still one.</summary>
    public const int MostDays = 36_500;

    /// <summary>The newest lines no age ever removes: the recent record outlives a clock set years ahead.</summary>
    public long KeepNewest { get; init; } = 1000;

    /// <summary>Lines appended before this are old enough to go (at most <see cref="MostDays"/> back).</summary>
    public DateTimeOffset Cutoff(DateTimeOffset now) => now - TimeSpan.FromDays(Math.Clamp(Days, 1, MostDays));

    /// <summary>How often the server prunes.</summary>
    public TimeSpan Every { get; init; } = TimeSpan.FromHours(1);

    /// <summary>When the server first prunes after it starts.</summary>
    public TimeSpan FirstAfter { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>The audit line a prune leaves when it removed any (what the owner reads in the log).</summary>
    public string Outcome(AuditPrune prune) =>
        $"{prune.Removed} line(s) removed: older than {Days} day(s), or beyond the newest {MaxLines}"
        + (prune.BeforeTheirTime == 0 ? "" : $"; {prune.BeforeTheirTime} of them younger than {Days} day(s): the log is at its line limit");
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

    public async Task<AuditPrune> PruneAsync(DateTimeOffset before, long keepAtMost, long keepNewest, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(keepAtMost);
        ArgumentOutOfRangeException.ThrowIfNegative(keepNewest);
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        // Ids grow in the order lines are appended: everything up to the first id is beyond the newest
        // keepAtMost; everything from the second on is among the newest keepNewest, which no age removes.
        async Task<long?> NewestBut(long skip) => skip == 0 ? null
            : await ScalarAsync(connection, null, "SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET @k", cancellationToken, ("@k", skip - 1)) is { } id and not DBNull
                ? Convert.ToInt64(id, System.Globalization.CultureInfo.InvariantCulture) : null;
        var beyondId = keepAtMost == long.MaxValue ? long.MinValue : await NewestBut(keepAtMost + 1) ?? long.MinValue;
        // (No line protected when keepNewest is 0; every line when there are fewer than keepNewest.)
        var protectedFrom = keepNewest == 0 ? long.MaxValue : await NewestBut(keepNewest) ?? long.MinValue;
        long removed = 0, beforeTheirTime = 0;
        while (true)
        {
            // The oldest batch: remove up to the last line that is beyond the count or too old (and not
            // among the newest kept), and stop at the first that is neither (lines are appended in time order).
            var oldest = await ReadAllAsync(connection, null, "SELECT id, at FROM audit ORDER BY id LIMIT @n",
                r => (Id: r.GetInt64(0), At: r.Time(1)), cancellationToken, ("@n", PruneBatch));
            long? upTo = null;
            long young = 0;
            var stopped = false;
            foreach (var (id, at) in oldest)
            {
                var tooOld = at < before && id < protectedFrom;
                if (id > beyondId && !tooOld)
                {
                    stopped = true;
                    break;
                }
                upTo = id;
                if (at >= before) young++;
            }
            if (upTo is not { } last) return new AuditPrune(removed, beforeTheirTime);
            removed += await ExecuteAsync(connection, null, "DELETE FROM audit WHERE id <= @id", cancellationToken, ("@id", last));
            beforeTheirTime += young;
            if (stopped || oldest.Count < PruneBatch) return new AuditPrune(removed, beforeTheirTime);
        }
    }

    public async Task<IReadOnlyList<AuditEntry>> RecentAsync(int limit, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return await ReadAllAsync(connection, null, "SELECT at, device, action, market, mode, outcome FROM audit ORDER BY id DESC LIMIT @l",
            r => new AuditEntry(r.Time(0), r.NullableString(1), r.GetString(2), r.NullableString(3), r.NullableString(4), r.GetString(5)),
            cancellationToken, ("@l", limit));
    }

    public async Task<(IReadOnlyList<AuditEntry> Entries, long Total)> SearchAsync(AuditFilter filter, int skip, int take, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(skip);
        ArgumentOutOfRangeException.ThrowIfNegative(take);
        var where = new List<string>();
        var parameters = new List<(string, object?)>();
        if (filter.DeviceIds is { } ids)
        {
            var names = ids.Select((id, i) => (Name: $"@d{i}", Id: id)).ToList();
            where.Add(names.Count == 0 ? "1 = 0" : $"device IN ({string.Join(", ", names.Select(n => n.Name))})");
            parameters.AddRange(names.Select(n => (n.Name, (object?)n.Id)));
        }
        // Both stores' LIKE, with the text's own wildcards taken literally, on lower-cased text (PostgreSQL's LIKE heeds case).
        // ASCII letters only, as SQLite's lower() lowers them (what the log holds is ASCII: markets in their ASCII form,
        // outcomes in English); another letter is matched as written.
        static string Contains(string text) =>
            "%" + string.Concat(text.Select(c => char.IsAsciiLetterUpper(c) ? (char)(c | 0x20) : c)).Replace("\\", "\\\\").Replace("%", "\\%").Replace("_", "\\_") + "%";
        if (filter.Market.Length > 0)
        {
            where.Add("lower(COALESCE(market, '')) LIKE @m ESCAPE '\\'");
            parameters.Add(("@m", Contains(filter.Market)));
        }
        if (filter.Outcome.Length > 0)
        {
            where.Add("lower(outcome) LIKE @o ESCAPE '\\'");
            parameters.Add(("@o", Contains(filter.Outcome)));
        }
        var clause = where.Count == 0 ? "" : " WHERE " + string.Join(" AND ", where);
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        var total = Convert.ToInt64(await ScalarAsync(connection, null, "SELECT COUNT(*) FROM audit" + clause, cancellationToken, [.. parameters]), System.Globalization.CultureInfo.InvariantCulture);
        var entries = await ReadAllAsync(connection, null, $"SELECT at, device, action, market, mode, outcome FROM audit{clause} ORDER BY id DESC LIMIT @take OFFSET @skip",
            r => new AuditEntry(r.Time(0), r.NullableString(1), r.GetString(2), r.NullableString(3), r.NullableString(4), r.GetString(5)),
            cancellationToken, [.. parameters, ("@take", take), ("@skip", skip)]);
        return (entries, total);
    }
}
