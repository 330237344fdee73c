using Daiko.Home.Delegation;
using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>What the home server learned about each market (the basis of auto mode), kept in the home store.</summary>
public interface IMarketProfileStore
{
    Task<MarketProfile?> FindAsync(string host, int port, CancellationToken cancellationToken = default);

    /// <summary>
    /// Stores a profile, replacing the one for the same host and port, except whether the market takes
    /// psk_ke: a new profile starts with the value given, and only <see cref="RememberPskKeAsync"/> changes it
    /// (what a handshake writes comes from a read that a psk_ke check may have overtaken).
    /// </summary>
    Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default);

    /// <summary>Sets only whether the market resumes with psk_ke, in a profile already stored (else nothing).</summary>
    Task RememberPskKeAsync(string host, int port, bool accepts, CancellationToken cancellationToken = default);
}

/// <summary>
/// Market profiles on any <see cref="IHomeStore"/> (SQLite or PostgreSQL): one table, the same SQL on
/// both (named @parameters, an ON CONFLICT upsert), created by its migration on first use.
/// </summary>
public sealed class SqlMarketProfileStore(IHomeStore store) : IMarketProfileStore
{
    // The tickets column: none seen (yet), issues tickets, or a full wait confirmed none.
    private const int NoneSeen = 0;
    private const int Issues = 1;
    private const int NoneConfirmed = 2;

    internal static readonly Migration Migration = new("market_profiles/1", """
        CREATE TABLE IF NOT EXISTS market_profiles (
            host TEXT NOT NULL, port INTEGER NOT NULL, tls13 INTEGER NOT NULL, tickets INTEGER NOT NULL,
            psk_ke INTEGER NOT NULL, max_early_data BIGINT NOT NULL, learned_at TEXT NOT NULL,
            PRIMARY KEY (host, port))
        """);

    public async Task<MarketProfile?> FindAsync(string host, int port, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        var found = await ReadAllAsync(connection, null,
            "SELECT host, port, tls13, tickets, psk_ke, max_early_data, learned_at FROM market_profiles WHERE host = @h AND port = @p",
            r => new MarketProfile(r.GetString(0), (int)r.Long(1), r.Long(2) != 0, r.Long(3) == Issues, r.Long(4) != 0, (uint)r.Long(5), r.Time(6)) { NoTicketsConfirmed = r.Long(3) == NoneConfirmed },
            cancellationToken, ("@h", host), ("@p", port));
        return found.SingleOrDefault();
    }

    public async Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        await ExecuteAsync(connection, null, """
            INSERT INTO market_profiles(host, port, tls13, tickets, psk_ke, max_early_data, learned_at)
            VALUES (@h, @p, @t, @k, @e, @m, @at)
            ON CONFLICT(host, port) DO UPDATE SET tls13 = @t, tickets = @k, max_early_data = @m, learned_at = @at
            """, cancellationToken,
            ("@h", profile.Host), ("@p", profile.Port), ("@t", profile.Tls13 ? 1 : 0), ("@k", profile.IssuesTickets ? Issues : profile.NoTicketsConfirmed ? NoneConfirmed : NoneSeen),
            ("@e", profile.AcceptsPskKe ? 1 : 0), ("@m", (long)profile.MaxEarlyData), ("@at", Text(profile.LearnedAt)));
    }

    public async Task RememberPskKeAsync(string host, int port, bool accepts, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        await ExecuteAsync(connection, null, "UPDATE market_profiles SET psk_ke = @e WHERE host = @h AND port = @p",
            cancellationToken, ("@h", host), ("@p", port), ("@e", accepts ? 1 : 0));
    }
}
