using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>One audited event: who, what, with which market and mode, and the outcome. Never a secret.</summary>
public sealed record AuditEntry(DateTimeOffset At, string? Device, string Action, string? Market, string? Mode, string Outcome);

/// <summary>The append-only audit log. An append returns once it is durable; appends made at once share a commit.</summary>
public interface IAuditStore
{
    Task AppendAsync(AuditEntry entry, CancellationToken cancellationToken = default);

    /// <summary>The newest <paramref name="limit"/> entries, newest first (in the order they were appended).</summary>
    Task<IReadOnlyList<AuditEntry>> RecentAsync(int limit, CancellationToken cancellationToken = default);
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

    public async Task<IReadOnlyList<AuditEntry>> RecentAsync(int limit, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return await ReadAllAsync(connection, null, "SELECT at, device, action, market, mode, outcome FROM audit ORDER BY id DESC LIMIT @l",
            r => new AuditEntry(r.Time(0), r.NullableString(1), r.GetString(2), r.NullableString(3), r.NullableString(4), r.GetString(5)),
            cancellationToken, ("@l", limit));
    }
}
