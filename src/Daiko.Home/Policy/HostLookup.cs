using System.Collections.Concurrent;
using System.Net;

namespace Daiko.Home.Policy;

/// <summary>
/// Name lookups for markets, each answer kept for <see cref="Freshness"/>: a terminal's sessions with
/// one market come in runs, and a lookup per session cost the home server as much CPU as the card's
/// signature (the system resolver reads its files every time). Only the lookup is kept: every use still
/// judges the addresses against the asking device's markets (<see cref="MarketReach"/>). Failures are
/// not kept, and at most <see cref="MaxNames"/> names are.
/// </summary>
public sealed class HostLookup(Func<string, CancellationToken, Task<IPAddress[]>>? resolve = null, TimeProvider? time = null)
{
    /// <summary>How long an answer is used before the name is looked up again.</summary>
    public static readonly TimeSpan Freshness = TimeSpan.FromSeconds(5);

    /// <summary>The most names kept at once (beyond it, the whole memory is dropped and refilled).</summary>
    public const int MaxNames = 1024;

    /// <summary>The one the home server uses, over the system resolver.</summary>
    public static readonly HostLookup System = new();

    private readonly Func<string, CancellationToken, Task<IPAddress[]>> _resolve = resolve ?? Dns.GetHostAddressesAsync;
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly ConcurrentDictionary<string, (IPAddress[] Addresses, DateTimeOffset At)> _answers = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The addresses of <paramref name="host"/> (an address literal is its own answer).</summary>
    public async Task<IPAddress[]> AddressesAsync(string host, CancellationToken cancellationToken)
    {
        if (IPAddress.TryParse(host.Trim('[', ']'), out var literal)) return [literal];
        var now = _time.GetUtcNow();
        if (_answers.TryGetValue(host, out var kept) && now - kept.At < Freshness && now >= kept.At) return [.. kept.Addresses];
        var addresses = await _resolve(host, cancellationToken).ConfigureAwait(false);
        if (_answers.Count >= MaxNames) _answers.Clear();
        _answers[host] = ([.. addresses], now);
        return addresses;
    }
}
