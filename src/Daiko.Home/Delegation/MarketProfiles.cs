using Daiko.Protocol;

namespace Daiko.Home.Delegation;

/// <summary>What the home server has learned about a market from its handshakes with it.</summary>
public sealed record MarketProfile(
    string Host,
    int Port,
    bool Tls13,
    bool IssuesTickets,
    bool AcceptsPskKe,
    uint MaxEarlyData,
    DateTimeOffset LearnedAt);

/// <summary>
/// Remembers what each market supports so that <see cref="DelegationMode.Auto"/> can pick the cheapest
/// mode for the terminal without probing every time (kept in the home store, SQLite or PostgreSQL).
/// </summary>
public sealed class MarketProfiles(Storage.IMarketProfileStore store)
{
    public Task<MarketProfile?> FindAsync(string host, int port, CancellationToken cancellationToken = default) => store.FindAsync(host, port, cancellationToken);

    public Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default) => store.RememberAsync(profile, cancellationToken);

    /// <summary>
    /// The cheapest mode for the terminal, in terminal cost order: resume (one ClientHello, no
    /// certificate work), handoff (no handshake at all on the terminal, but every byte crosses the home
    /// server), relay (works with anything, TLS 1.2 included). An unknown market gets resume, which
    /// falls back to handoff if the market issues no ticket.
    /// </summary>
    public static DelegationMode Choose(MarketProfile? profile) => profile switch
    {
        null => DelegationMode.Resume,
        { Tls13: false } => DelegationMode.Relay,
        { IssuesTickets: true } => DelegationMode.Resume,
        _ => DelegationMode.Handoff,
    };
}
