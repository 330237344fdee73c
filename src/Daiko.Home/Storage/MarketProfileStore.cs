using System.Globalization;
using Daiko.Home.Delegation;
using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>What the home server learned about each market (the basis of auto mode), kept in the home store.</summary>
public interface IMarketProfileStore
{
    /// <summary>The profile of the market <paramref name="key"/> names (host, port, server name and the ALPN its handshakes offered), or null.</summary>
    Task<MarketProfile?> FindAsync(MarketProfileKey key, CancellationToken cancellationToken = default);

    /// <summary>
    /// Stores a profile, replacing the one for the same host, port, server name and ALPN, except whether the market takes
    /// psk_ke: a new profile starts with the value given, and only <see cref="RememberPskKeAsync"/> changes it
    /// (what a handshake writes comes from a read that a psk_ke check may have overtaken). One market (host, port, server
    /// name) keeps the profiles of its <see cref="SqlMarketProfileStore.MaxAlpnsKept"/> ALPNs learned last: the ALPN is the
    /// device's to choose, and a device offering ever new ones would otherwise add a row a handshake. The whole table keeps
    /// the <see cref="SqlMarketProfileStore.MaxProfilesKept"/> profiles learned last: a device whose policy allows a wildcard
    /// name or an address range chooses the server name and host too.
    /// </summary>
    Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default);

    /// <summary>Sets only whether the market resumes with psk_ke, in a profile already stored (else nothing).</summary>
    Task RememberPskKeAsync(MarketProfileKey key, bool accepts, CancellationToken cancellationToken = default);
}

/// <summary>
/// Market profiles on any <see cref="IHomeStore"/> (SQLite or PostgreSQL): one table, the same SQL on
/// both (named @parameters, an ON CONFLICT upsert), created by its migration on first use.
/// </summary>
/// <param name="maxProfilesKept">Profiles the whole table keeps (<see cref="MaxProfilesKept"/> unless a test says fewer).</param>
public sealed class SqlMarketProfileStore(IHomeStore store, int maxProfilesKept = SqlMarketProfileStore.MaxProfilesKept) : IMarketProfileStore
{
    // The tickets column: none seen (yet), issues tickets, or a full wait confirmed none.
    private const int NoneSeen = 0;
    private const int Issues = 1;
    private const int NoneConfirmed = 2;

    /// <summary>
    /// Profiles by host, port, server name and ALPN ('' for none): one address may serve names configured
    /// apart (one issuing tickets, another not), a front end may route one name to back ends by the ALPN
    /// offered, and what a device's handshake under one learns says nothing of another's.
    /// The table before it (<c>market_profiles</c>, by host and port) is left as it was: a node of the
    /// version before, still running beside this one, reads and writes it as before, and this version
    /// learns its profiles again in a handshake each.
    /// </summary>
    internal static readonly Migration Migration = new("market_profiles_by_name/1", """
        CREATE TABLE IF NOT EXISTS market_profiles_by_name (
            host TEXT NOT NULL, port INTEGER NOT NULL, server_name TEXT NOT NULL, alpn TEXT NOT NULL, tls13 INTEGER NOT NULL,
            tickets INTEGER NOT NULL, psk_ke INTEGER NOT NULL, max_early_data BIGINT NOT NULL, learned_at TEXT NOT NULL,
            PRIMARY KEY (host, port, server_name, alpn))
        """);

    public async Task<MarketProfile?> FindAsync(MarketProfileKey key, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        var found = await ReadAllAsync(connection, null,
            "SELECT host, port, tls13, tickets, psk_ke, max_early_data, learned_at, server_name FROM market_profiles_by_name WHERE host = @h AND port = @p AND server_name = @n AND alpn = @a",
            r => new MarketProfile(r.GetString(0), (int)r.Long(1), r.Long(2) != 0, r.Long(3) == Issues, r.Long(4) != 0, (uint)r.Long(5), r.Time(6))
            {
                NoTicketsConfirmed = r.Long(3) == NoneConfirmed,
                // The host's own name is no server name of its own (as a market request has it).
                ServerName = r.GetString(7) == r.GetString(0) ? null : r.GetString(7),
                Alpn = key.Alpn is "" ? null : key.Alpn,
            },
            cancellationToken, ("@h", key.Host), ("@p", key.Port), ("@n", key.ServerName), ("@a", key.Alpn));
        return found.SingleOrDefault();
    }

    /// <summary>
    /// ALPNs whose profiles one market (host, port, server name) keeps; the one learned longest ago goes first. Its markets and
    /// server names are the device policy's, but the ALPN a handshake offers is the device's own choice.
    /// </summary>
    public const int MaxAlpnsKept = 8;

    /// <summary>
    /// Profiles the whole table keeps; the ones learned longest ago go first. A profile is what a handshake learned and the
    /// next handshake with that market learns again, so one pushed out costs that market one handshake's learning (a
    /// ticket-less or psk_ke-less guess), never a session. A device whose policy allows a wildcard name or an address range
    /// chooses the server name (and the host) of each market it asks for, and would otherwise add up to
    /// <see cref="MaxAlpnsKept"/> rows a name.
    /// </summary>
    public const int MaxProfilesKept = 4096;

    public async Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        // Exclusive (on PostgreSQL a lock for the table's writers): two nodes pruning one market at once would each
        // delete the row the other just wrote, or deadlock on them.
        await using var transaction = await store.BeginExclusiveAsync(connection, "market_profiles_by_name", cancellationToken);
        await ExecuteAsync(connection, transaction, """
            INSERT INTO market_profiles_by_name(host, port, server_name, alpn, tls13, tickets, psk_ke, max_early_data, learned_at)
            VALUES (@h, @p, @n, @a, @t, @k, @e, @m, @at)
            ON CONFLICT(host, port, server_name, alpn) DO UPDATE SET tls13 = @t, tickets = @k, max_early_data = @m, learned_at = @at
            """, cancellationToken,
            ("@h", profile.Host), ("@p", profile.Port), ("@n", profile.EffectiveServerName), ("@a", profile.Alpn ?? ""), ("@t", profile.Tls13 ? 1 : 0), ("@k", profile.IssuesTickets ? Issues : profile.NoTicketsConfirmed ? NoneConfirmed : NoneSeen),
            ("@e", profile.AcceptsPskKe ? 1 : 0), ("@m", (long)profile.MaxEarlyData), ("@at", Text(profile.LearnedAt)));
        // Rewritten at most once a minute each (MarketProfiles.Rewrite) unless something changed: the prune is no cost per handshake.
        await ExecuteAsync(connection, transaction, $"""
            DELETE FROM market_profiles_by_name WHERE host = @h AND port = @p AND server_name = @n AND alpn NOT IN (
                SELECT alpn FROM market_profiles_by_name WHERE host = @h AND port = @p AND server_name = @n
                ORDER BY learned_at DESC, alpn LIMIT {MaxAlpnsKept})
            """, cancellationToken, ("@h", profile.Host), ("@p", profile.Port), ("@n", profile.EffectiveServerName));
        var rows = Convert.ToInt64(await ScalarAsync(connection, transaction, "SELECT COUNT(*) FROM market_profiles_by_name", cancellationToken), CultureInfo.InvariantCulture);
        if (rows > maxProfilesKept)
        {
            await ExecuteAsync(connection, transaction, """
                DELETE FROM market_profiles_by_name WHERE (host, port, server_name, alpn) IN (
                    SELECT host, port, server_name, alpn FROM market_profiles_by_name
                    ORDER BY learned_at, host, port, server_name, alpn LIMIT @excess)
                """, cancellationToken, ("@excess", rows - maxProfilesKept));
        }
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task RememberPskKeAsync(MarketProfileKey key, bool accepts, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        await ExecuteAsync(connection, null, "UPDATE market_profiles_by_name SET psk_ke = @e WHERE host = @h AND port = @p AND server_name = @n AND alpn = @a",
            cancellationToken, ("@h", key.Host), ("@p", key.Port), ("@n", key.ServerName), ("@a", key.Alpn), ("@e", accepts ? 1 : 0));
    }
}
