using Daiko.Home.Hosting;
using Daiko.Home.Policy;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Control;

/// <summary>
/// Picks up the owner's policy changes (written by <c>daiko home device policy</c> or the console,
/// possibly in another process) for every device with an open channel, and when the rules its tickets
/// were handed out under change (markets, modes, ticket count or lifetime), tells that device's agents
/// to drop their ticket stock at once. Other devices keep theirs. The comparison is with the terms the
/// stock was handed out under (<see cref="DevicePolicies.StockedAsync"/>, kept in the store), so a
/// change made right after a hand-out, before any look, still counts, as does one made while the device
/// was away, while the server was down, or on another node. When the markets or modes changed, what the
/// device has running here under the old ones goes too (<paramref name="reachChanged"/>: its relays, handed-over
/// sessions and handshakes in flight, and its assist grant), so that no session the new policy forbids runs on.
/// </summary>
public sealed class PolicyWatcher(DevicePolicies policies, ConnectionRegistry connections, TimeProvider time, ILogger logger, Action<string>? reachChanged = null)
{
    /// <summary>The terms each device's live work was last cut for, so that a notice no agent heard yet does not cut it again at every look.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _cutFor = new(StringComparer.Ordinal);

    /// <summary>How often the connected devices' policies are read afresh and compared with the terms of their stock.</summary>
    public static readonly TimeSpan Poll = TimeSpan.FromSeconds(1);

    /// <summary>Looks every <paramref name="poll"/>; a busy or unreachable store is tried again at the next poll.</summary>
    public Task RunAsync(TimeSpan poll, CancellationToken cancellationToken) =>
        new BackgroundLook("reading the device policies", CheckAsync, e => e is System.Data.Common.DbException, time, logger).RunAsync(poll, cancellationToken);

    /// <summary>One look at the connected devices' policies; returns how many devices were told to drop their stock.</summary>
    public async Task<int> CheckAsync(CancellationToken cancellationToken)
    {
        var told = 0;
        foreach (var deviceId in connections.DeviceIds())
        {
            if (await policies.StaleStockAsync(deviceId, cancellationToken) is not { } stale) continue;
            if (reachChanged is not null && Reach(stale.HandedUnder) != Reach(stale.Current) && _cutFor.GetValueOrDefault(deviceId) != stale.Current)
            {
                reachChanged(deviceId);
                _cutFor[deviceId] = stale.Current;
                logger.PolicyCutLiveWork(stale.Name);
            }
            // Judged done only once an agent heard it: a notice that reached none is sent again at the next look.
            if (await connections.DropTicketsAsync(deviceId, "the owner changed this device's policy") == 0) continue;
            await policies.StockDroppedAsync(stale, cancellationToken);
            logger.PolicyChanged(stale.Name);
            told++;
        }
        return told;
    }

    /// <summary>The markets and modes of <see cref="DevicePolicy.TicketTerms"/> (its last two fields are the ticket count and lifetime).</summary>
    private static string Reach(string terms)
    {
        var lifetime = terms.LastIndexOf('|');
        var count = lifetime > 0 ? terms.LastIndexOf('|', lifetime - 1) : -1;
        return count >= 0 ? terms[..count] : terms;
    }
}
