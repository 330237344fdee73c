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
    DateTimeOffset LearnedAt)
{
    /// <summary>
    /// A full wait for tickets after a handshake (as long as the handshake itself may take) brought none:
    /// the market is known not to issue them. A brief wait that saw none (a handoff's) proves nothing.
    /// </summary>
    public bool NoTicketsConfirmed { get; init; }
}

/// <summary>
/// Remembers what each market supports so that <see cref="DelegationMode.Auto"/> can pick the cheapest
/// mode for the terminal without probing every time (kept in the home store, SQLite or PostgreSQL).
/// </summary>
public sealed class MarketProfiles(Storage.IMarketProfileStore store)
{
    public Task<MarketProfile?> FindAsync(string host, int port, CancellationToken cancellationToken = default) => store.FindAsync(host, port, cancellationToken);

    public Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default) => store.RememberAsync(profile, cancellationToken);

    /// <summary>
    /// The cheapest mode that will work for the terminal, in terminal cost order: resume (one
    /// ClientHello, no certificate work) for a market known to issue tickets, handoff (no handshake at
    /// all on the terminal, but every byte crosses the home server) for a TLS 1.3 market without
    /// tickets, relay (works with anything, TLS 1.2 included). An unknown market gets handoff: the
    /// home server's one handshake serves the terminal at once and teaches the profile (whether tickets
    /// come, which version), so no resume is tried and failed first; the delegation handler hands a
    /// TLS 1.2 market's session over as a relay instead.
    /// </summary>
    public static DelegationMode Choose(MarketProfile? profile) => profile switch
    {
        null => DelegationMode.Handoff,
        { Tls13: false } => DelegationMode.Relay,
        { IssuesTickets: true } => DelegationMode.Resume,
        _ => DelegationMode.Handoff,
    };
}
