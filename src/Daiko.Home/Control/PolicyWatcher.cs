using Daiko.Home.Hosting;
using Daiko.Home.Policy;
using Daiko.Protocol;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Control;

/// <summary>
/// Picks up the owner's policy changes (written by <c>daiko home device policy</c> or the console,
/// possibly in another process) for every device with an open channel, and when the rules its tickets
/// were handed out under change (markets, modes, ticket count or lifetime), tells that device's agents
/// to drop their ticket stock at once. Other devices keep theirs. The comparison is with the terms the
/// stock was handed out under (<see cref="DevicePolicies.StockedAsync"/>, kept in the store), so a
/// change made right after a hand-out, before any look, still counts, as does one made while the device
/// was away, while the server was down, or on another node. When a device's markets or modes narrow (one it
/// had is gone, against the last look and every policy its requests were admitted under since), what it has running
/// here goes too (<paramref name="reachNarrowed"/>: its relays, handed-over sessions and handshakes in flight, and its
/// assist grant; true when there was any), so that no session the new policy forbids runs on. A policy that only widens, or changes the ticket count or lifetime, ends nothing.
/// </summary>
public sealed class PolicyWatcher(DevicePolicies policies, ConnectionRegistry connections, TimeProvider time, ILogger logger, Func<string, bool>? reachNarrowed = null)
{
    /// <summary>The markets and modes each connected device had at the last look.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (HashSet<string> Markets, HashSet<DelegationMode> Modes)> _reach = new(StringComparer.Ordinal);

    /// <summary>How often the connected devices' policies are read afresh and compared with the terms of their stock.</summary>
    public static readonly TimeSpan Poll = TimeSpan.FromSeconds(1);

    /// <summary>Looks every <paramref name="poll"/>; a busy or unreachable store is tried again at the next poll.</summary>
    public Task RunAsync(TimeSpan poll, CancellationToken cancellationToken) =>
        new BackgroundLook("reading the device policies", CheckAsync, e => e is System.Data.Common.DbException, time, logger).RunAsync(poll, cancellationToken);

    /// <summary>One look at the connected devices' policies; returns how many devices were told to drop their stock.</summary>
    public async Task<int> CheckAsync(CancellationToken cancellationToken)
    {
        var told = 0;
        var connected = connections.DeviceIds().ToList();
        foreach (var gone in _reach.Keys.Except(connected, StringComparer.Ordinal)) _reach.TryRemove(gone, out _);
        policies.ForgetReachGivenExcept(connected);
        foreach (var deviceId in connected)
        {
            var stale = await policies.StaleStockAsync(deviceId, cancellationToken);
            if (reachNarrowed is not null)
            {
                // The read the stock's check just made (kept for a moment), not another.
                var (policy, name) = await policies.ForDeviceAsync(deviceId, cancellationToken);
                var reach = (Markets: policy.Markets.Select(m => m.Text).ToHashSet(StringComparer.Ordinal), Modes: policy.Modes.ToHashSet());
                // What the device may have running: what it had at the last look, and every policy its requests were
                // admitted under since (one read from the cache just before a change, or before this server's first look).
                var given = policies.TakeReachGiven(deviceId);
                var narrowed = _reach.TryGetValue(deviceId, out var before) && !(before.Markets.IsSubsetOf(reach.Markets) && before.Modes.IsSubsetOf(reach.Modes))
                    || given is { } g && !(g.Markets.IsSubsetOf(reach.Markets) && g.Modes.IsSubsetOf(reach.Modes));
                if (narrowed && reachNarrowed(deviceId)) logger.PolicyCutLiveWork(name);
                _reach[deviceId] = reach;
            }
            if (stale is null) continue;
            // Judged done only once an agent heard it: a notice that reached none is sent again at the next look.
            if (await connections.DropTicketsAsync(deviceId, "the owner changed this device's policy") == 0) continue;
            await policies.StockDroppedAsync(stale, cancellationToken);
            logger.PolicyChanged(stale.Name);
            told++;
        }
        return told;
    }
}
