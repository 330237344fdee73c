using System.Collections.Concurrent;
using Daiko.Home.Storage;

namespace Daiko.Home.Policy;

/// <summary>
/// The running home server's view of device policies: each device's policy read from the store (a
/// change applies within <see cref="Freshness"/>), the markets it may reach, the tickets it holds,
/// and when it was last used.
/// </summary>
/// <param name="tickets">The tickets each device holds, when counted elsewhere than in this view's memory (in the store, where several processes serve the owner's devices); else its own.</param>
public sealed class DevicePolicies(IDevicePolicyStore store, Func<string, CancellationToken, Task<string?>> deviceName, TimeProvider time, bool allowPrivateMarkets = false,
    ITicketHoldings? tickets = null)
{
    /// <summary>How long a policy read from the store is used before it is read again.</summary>
    public static readonly TimeSpan Freshness = TimeSpan.FromMilliseconds(500);

    private static readonly TimeSpan UseResolution = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, (DevicePolicy Policy, string Name, DateTimeOffset ReadAt)> _read = new();
    private readonly ConcurrentDictionary<string, DateTimeOffset> _used = new();

    /// <summary>The markets and modes of every policy given out for each device since <see cref="TakeReachGiven"/> last took them.</summary>
    private readonly ConcurrentDictionary<string, ReachGiven> _given = new(StringComparer.Ordinal);

    /// <summary>The terms each device's stock was handed out under, as this process knows them (the store keeps them across restarts and nodes).</summary>
    private readonly ConcurrentDictionary<string, string> _stockTerms = new(StringComparer.Ordinal);

    public ITicketHoldings Tickets { get; } = tickets ?? new TicketHoldings(time);

    /// <summary>Where the policies are kept.</summary>
    public IDevicePolicyStore Store => store;

    /// <summary>The command that changes a policy kept here, which a refusal names (a hosted owner's names the owner).</summary>
    public PolicyCommand Command { get; init; } = PolicyCommand.Home;

    /// <summary>
    /// The reply to <paramref name="refusal"/> of the device <paramref name="deviceId"/>: with its remedy as the command that
    /// changes this device's policy here. The device's name comes from the policy just read (cached); should the store be out
    /// of reach meanwhile, the refusal is still answered, without the name.
    /// </summary>
    public async Task<string> ReplyAsync(PolicyRefusedException refusal, string deviceId, CancellationToken cancellationToken = default)
    {
        if (refusal.Remedy is null) return refusal.Reply;
        string? name;
        try
        {
            name = (await ForDeviceAsync(deviceId, cancellationToken)).Name;
        }
        catch (Exception e) when (Storage.StoreOutage.Is(e))
        {
            name = null;
        }
        return refusal.ReplyUnder(Command, name);
    }

    /// <summary>
    /// A device being added by name gets <paramref name="defaults"/> (home.json's device_defaults) unless
    /// the owner already set a policy for that name; returns the policy it has now.
    /// </summary>
    public static async Task<DevicePolicy> SetForNewDeviceAsync(IDevicePolicyStore store, string deviceName, DevicePolicy defaults, CancellationToken cancellationToken = default)
    {
        if (await store.FindAsync(deviceName, cancellationToken) is { } set) return set;
        await store.SaveAsync(deviceName, defaults, cancellationToken);
        return defaults;
    }

    public TimeProvider Time => time;

    /// <summary>Whether <c>home serve --allow-private-markets</c> lets every device reach private addresses (labs, tests).</summary>
    public bool AllowPrivateMarkets => allowPrivateMarkets;

    /// <summary>The device's policy (the default when the owner set none) and its name.</summary>
    /// <param name="fresh">Read from the store even when a read younger than <see cref="Freshness"/> is at hand.</param>
    public async Task<(DevicePolicy Policy, string Name)> ForDeviceAsync(string deviceId, CancellationToken cancellationToken = default, bool fresh = false)
    {
        var now = time.GetUtcNow();
        if (_read.TryGetValue(deviceId, out var known) && !fresh && now - known.ReadAt < Freshness)
        {
            NoteGiven(deviceId, known.Policy);
            return (known.Policy, known.Name);
        }
        var name = known.Name ?? await deviceName(deviceId, cancellationToken) ?? deviceId;
        var policy = await store.FindAsync(name, cancellationToken) ?? DevicePolicy.Default;
        // A read begun earlier never replaces one begun later.
        _read.AddOrUpdate(deviceId, (policy, name, now), (_, other) => other.ReadAt > now ? other : (policy, name, now));
        NoteGiven(deviceId, policy);
        return (policy, name);
    }

    /// <summary>
    /// The markets and modes of every policy given out for the device since the last call (whatever read it: a request
    /// admitted under a policy cached from before a change is among them), or null when none was; starts afresh.
    /// The policy watcher judges whether a change took something away by these, so that work admitted under a policy
    /// its last look did not see (read from the cache, or before its first look at the device) is not missed.
    /// </summary>
    public (IReadOnlySet<string> Markets, IReadOnlySet<Protocol.DelegationMode> Modes)? TakeReachGiven(string deviceId)
    {
        if (!_given.TryRemove(deviceId, out var given)) return null;
        lock (given)
        {
            given.Taken = true;
            return (given.Markets, given.Modes);
        }
    }

    /// <summary>Forgets what was given out for devices other than <paramref name="keep"/> (no longer connected).</summary>
    public void ForgetReachGivenExcept(IReadOnlyCollection<string> keep)
    {
        foreach (var deviceId in _given.Keys.Except(keep, StringComparer.Ordinal))
        {
            if (!_given.TryRemove(deviceId, out var given)) continue;
            // As a take does: a note under way goes to a fresh record, not to this one now dropped.
            lock (given) given.Taken = true;
        }
    }

    private void NoteGiven(string deviceId, DevicePolicy policy)
    {
        while (true)
        {
            var given = _given.GetOrAdd(deviceId, _ => new ReachGiven());
            lock (given)
            {
                // Taken meanwhile: noted in the next one, not in the one the watcher already read.
                if (given.Taken) continue;
                if (ReferenceEquals(given.Last, policy)) return;
                given.Last = policy;
                foreach (var market in policy.Markets) given.Markets.Add(market.Text);
                given.Modes.UnionWith(policy.Modes);
                return;
            }
        }
    }

    private sealed class ReachGiven
    {
        public DevicePolicy? Last;
        public bool Taken;
        public readonly HashSet<string> Markets = new(StringComparer.Ordinal);
        public readonly HashSet<Protocol.DelegationMode> Modes = [];
    }

    /// <summary>A device's ticket stock handed out under terms that are no longer its policy's (<see cref="DevicePolicy.TicketTerms"/>).</summary>
    public sealed record StaleStock(string DeviceId, string Name, string HandedUnder, string Current);

    /// <summary>
    /// Notes that tickets went into the device's stock under <paramref name="terms"/> (the policy the
    /// hand-out read, perhaps from the cache just before a change: then it is caught at the next look).
    /// Kept in the store too when they change, so that a restarted server or another node judges the
    /// stock by the terms it was handed out under.
    /// </summary>
    public async Task StockedAsync(string deviceId, string terms, CancellationToken cancellationToken = default)
    {
        if (_stockTerms.TryGetValue(deviceId, out var known) && known == terms) return;
        _stockTerms[deviceId] = terms;
        var (_, name) = await ForDeviceAsync(deviceId, cancellationToken);
        await store.NoteStockTermsAsync(name, terms, cancellationToken);
    }

    /// <summary>
    /// The device's stock when its terms differ from its policy's now (read afresh), or null. A device
    /// this process has not seen is judged by the terms the store noted (a stock handed out by another
    /// node, or before a restart); with none noted, by its current terms.
    /// </summary>
    public async Task<StaleStock?> StaleStockAsync(string deviceId, CancellationToken cancellationToken = default)
    {
        var (policy, name) = await ForDeviceAsync(deviceId, cancellationToken, fresh: true);
        var current = policy.TicketTerms;
        if (!_stockTerms.TryGetValue(deviceId, out var handed))
        {
            handed = _stockTerms.GetOrAdd(deviceId, await store.StockTermsAsync(name, cancellationToken) ?? current);
        }
        return handed == current ? null : new StaleStock(deviceId, name, handed, current);
    }

    /// <summary>
    /// Once the device's agents were told to drop <paramref name="stale"/>: its stock's terms are the
    /// current ones, unless a hand-out noted other terms meanwhile (then the next look tells it again).
    /// Not called when no agent heard the notice, so that the next look tries again.
    /// </summary>
    public async Task StockDroppedAsync(StaleStock stale, CancellationToken cancellationToken = default)
    {
        if (!_stockTerms.TryUpdate(stale.DeviceId, stale.Current, stale.HandedUnder)) return;
        await store.NoteStockTermsAsync(stale.Name, stale.Current, cancellationToken);
    }

    /// <summary>Forgets the policies read so far: the next request reads its device's policy afresh (a change notice from another node).</summary>
    public void Invalidate() => _read.Clear();

    /// <summary>The markets the home server may connect to for a device with <paramref name="policy"/>.</summary>
    public MarketReach ReachFor(DevicePolicy policy) => new(policy.Markets, allowPrivateMarkets);

    /// <summary>
    /// Where the owner's console may act as the owner (a cancellation it posts): a market some enrolled
    /// device may use. A market names its own address for cancellations in what it signs, so a hostile
    /// payee could name one inside the owner's network; a private address is reached only when a
    /// device's list names it (or <c>home serve --allow-private-markets</c>), as for the devices.
    /// </summary>
    public async Task<MarketReach> ReachOfAnyDeviceAsync(Devices.DeviceRegistry devices, CancellationToken cancellationToken = default)
    {
        var markets = new List<MarketPattern>();
        foreach (var device in await devices.ListAsync(cancellationToken))
        {
            if (!device.Revoked) markets.AddRange((await ForDeviceAsync(device.Id, cancellationToken)).Policy.Markets);
        }
        return new MarketReach(markets.Distinct().ToList(), allowPrivateMarkets);
    }

    /// <summary>
    /// Records that the device made a request (written at most every 30 s per device). A write that fails is tried again
    /// at the device's next request, not 30 s later.
    /// </summary>
    public async Task NoteUseAsync(string deviceId, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var noted = _used.TryGetValue(deviceId, out var last);
        if (noted && now - last < UseResolution) return;
        _used[deviceId] = now;
        try
        {
            var (_, name) = await ForDeviceAsync(deviceId, cancellationToken);
            await store.NoteUseAsync(name, now, cancellationToken);
        }
        catch
        {
            // Unless another request noted a use meanwhile.
            if (noted) _used.TryUpdate(deviceId, last, now);
            else ((ICollection<KeyValuePair<string, DateTimeOffset>>)_used).Remove(new(deviceId, now));
            throw;
        }
    }
}
