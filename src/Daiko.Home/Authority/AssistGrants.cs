using System.Collections.Concurrent;

namespace Daiko.Home.Authority;

/// <summary>
/// The bounds of the assist signer. An approved <c>delegate assist</c> opens one grant for the device,
/// naming the market; the grant becomes usable when the home server itself verified that market's chain
/// for that device (<c>verify-chain</c> for the same name); it signs once, within
/// <see cref="Lifetime"/> of the delegation, and is used up. Anything else is refused with the reason.
/// </summary>
public sealed class AssistGrants(TimeProvider time)
{
    public static readonly TimeSpan Lifetime = TimeSpan.FromSeconds(30);

    private sealed record Grant(string Market, string ServerName, DateTimeOffset At, bool ChainVerified);

    private readonly ConcurrentDictionary<string, Grant> _grants = new(StringComparer.Ordinal);

    /// <summary>An approved <c>delegate assist</c> for <paramref name="market"/> (host:port), whose TLS server name is <paramref name="serverName"/>.</summary>
    public void Approve(string deviceId, string market, string serverName) =>
        _grants[deviceId] = new Grant(market, serverName, time.GetUtcNow(), false);

    /// <summary>
    /// The home server's verdict on a chain for <paramref name="serverName"/>: a trusted chain for the
    /// granted market's name makes the grant usable, an untrusted one ends it; a chain for another name
    /// leaves it as it was.
    /// </summary>
    public void ChainVerdict(string deviceId, string? serverName, bool trusted)
    {
        if (!_grants.TryGetValue(deviceId, out var grant) || !Names(grant.ServerName, serverName)) return;
        if (trusted) _grants.TryUpdate(deviceId, grant with { ChainVerified = true }, grant);
        else _grants.TryRemove(new KeyValuePair<string, Grant>(deviceId, grant));
    }

    /// <summary>
    /// Uses up the device's grant for one signature: the market it names, or null and why not. A grant
    /// that is refused (not verified yet, or too old) is used up too.
    /// </summary>
    public (string? Market, string? ServerName, string? Refusal) Consume(string deviceId)
    {
        if (!_grants.TryRemove(deviceId, out var grant))
            return (null, null, "sign is accepted only inside an approved 'delegate assist' for a market, once");
        if (time.GetUtcNow() - grant.At > Lifetime)
            return (null, null, $"the assist for {grant.Market} is older than {Lifetime.TotalSeconds:F0} s: delegate again");
        if (!grant.ChainVerified)
            return (null, null, $"the home server has not verified {grant.ServerName}'s certificate chain for this assist");
        return (grant.Market, grant.ServerName, null);
    }

    /// <summary>
    /// Whether <paramref name="name"/> (as a terminal wrote it: any case, a trailing dot, an IDN in
    /// Unicode) is the market's <paramref name="serverName"/>, which is kept in its one spelling
    /// (<see cref="Delegation.MarketRequest.CanonicalHost"/>).
    /// </summary>
    public static bool Names(string serverName, string? name) =>
        name is not null && string.Equals(Delegation.MarketRequest.CanonicalHost(name), Delegation.MarketRequest.CanonicalHost(serverName), StringComparison.Ordinal);

    /// <summary>Takes back the device's grant (its session ended, or its policy changed); whether it had one.</summary>
    public bool Revoke(string deviceId) => _grants.TryRemove(deviceId, out _);
}
