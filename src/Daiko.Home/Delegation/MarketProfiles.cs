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

    /// <summary>The server name its handshakes gave (null: the host itself); profiles of one address under two names are apart.</summary>
    public string? ServerName { get; init; }

    /// <summary>The ALPN protocol its handshakes offered (null: none); a front end may route by it, so profiles under two are apart.</summary>
    public string? Alpn { get; init; }

    public string EffectiveServerName => ServerName ?? Host;

    /// <summary>The market this profile is of: host, port, server name and ALPN.</summary>
    public MarketProfileKey Key => new(Host, Port, EffectiveServerName, Alpn ?? "");
}

/// <summary>
/// What a market's profile is kept by: host, port, the server name its handshakes gave and the ALPN they
/// offered ("" for none). One address may serve names configured apart, and a front end may route one name
/// by the ALPN offered: what one of them learns says nothing of another.
/// </summary>
public readonly record struct MarketProfileKey(string Host, int Port, string ServerName, string Alpn);

/// <summary>
/// Remembers what each market (host, port, server name and ALPN) supports so that <see cref="DelegationMode.Auto"/> can pick the cheapest
/// mode for the terminal without probing every time (kept in the home store, SQLite or PostgreSQL).
/// Every full handshake reports what it saw: a profile read is kept for <see cref="Freshness"/>, and
/// one that says what the store already says is written again only once its date is
/// <see cref="Rewrite"/> old, so that handshakes in a row cost no store write each.
/// </summary>
public sealed class MarketProfiles(Storage.IMarketProfileStore store, TimeProvider? time = null)
{
    /// <summary>How long a profile read from the store answers for it.</summary>
    public static readonly TimeSpan Freshness = TimeSpan.FromSeconds(1);

    /// <summary>How old a stored profile's date may grow before an unchanged profile is written again.</summary>
    public static readonly TimeSpan Rewrite = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Past this many markets remembered in memory, those read longer ago than <see cref="Freshness"/> (which
    /// answer for nothing any more) are let go: a device asking for ever new hosts does not grow the map.
    /// </summary>
    public const int MaxRemembered = 4096;

    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<MarketProfileKey, (MarketProfile? Profile, DateTimeOffset ReadAt)> _known = new();

    /// <summary>How many markets are remembered in memory now.</summary>
    public int Remembered => _known.Count;

    private void LetGoOfStale(DateTimeOffset now)
    {
        if (_known.Count <= MaxRemembered) return;
        foreach (var (key, entry) in _known)
        {
            if (now - entry.ReadAt >= Freshness) _known.TryRemove(KeyValuePair.Create(key, entry));
        }
    }

    /// <summary>What is known of the market as <paramref name="market"/> names it (its host, port, server name and ALPN), or null.</summary>
    public Task<MarketProfile?> FindAsync(MarketRequest market, CancellationToken cancellationToken = default) => FindAsync(market.ProfileKey, cancellationToken);

    public Task<MarketProfile?> FindAsync(string host, int port, string serverName, string? alpn, CancellationToken cancellationToken = default) =>
        FindAsync(new MarketProfileKey(host, port, serverName, alpn ?? ""), cancellationToken);

    private async Task<MarketProfile?> FindAsync(MarketProfileKey key, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        if (_known.TryGetValue(key, out var known) && now - known.ReadAt < Freshness) return known.Profile;
        var profile = await store.FindAsync(key, cancellationToken);
        // A profile remembered while this read was on its way is newer than what the read saw: it stays.
        _known.AddOrUpdate(key, (profile, now), (_, existing) => existing.ReadAt >= now ? existing : (profile, now));
        LetGoOfStale(now);
        return profile;
    }

    public async Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default)
    {
        var now = _time.GetUtcNow();
        var key = profile.Key;
        if (_known.TryGetValue(key, out var known) && known.Profile is { } stored && now - known.ReadAt < Freshness
            && stored with { LearnedAt = profile.LearnedAt } == profile && profile.LearnedAt - stored.LearnedAt < Rewrite)
        {
            return;
        }
        await store.RememberAsync(profile, cancellationToken);
        _known[key] = (profile, now);
        LetGoOfStale(now);
    }

    /// <summary>
    /// Records whether the market resumes with psk_ke, touching nothing else of its profile (what a
    /// handshake learned meanwhile stays, and so does the profile's date); nothing for a market not profiled.
    /// </summary>
    public async Task RememberPskKeAsync(MarketProfileKey key, bool accepts, CancellationToken cancellationToken = default)
    {
        var now = _time.GetUtcNow();
        await store.RememberPskKeAsync(key, accepts, cancellationToken);
        // A cached profile is kept as a fresh read would be (newer than any read still on its way, which then
        // cannot put the old value back); none cached, the next read goes to the store.
        if (_known.TryGetValue(key, out var known) && known.Profile is { } profile) _known[key] = (profile with { AcceptsPskKe = accepts }, now);
        else _known.TryRemove(key, out _);
    }

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
