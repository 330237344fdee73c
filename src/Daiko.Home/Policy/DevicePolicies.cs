using System.Collections.Concurrent;
using Daiko.Home.Storage;

namespace Daiko.Home.Policy;

/// <summary>
/// The running home server's view of device policies: each device's policy read from the store (a
/// change applies within <see cref="Freshness"/>), the markets it may reach, the tickets it holds,
/// and when it was last used.
/// </summary>
public sealed class DevicePolicies(IDevicePolicyStore store, Func<string, CancellationToken, Task<string?>> deviceName, TimeProvider time, bool allowPrivateMarkets = false)
{
    /// <summary>How long a policy read from the store is used before it is read again.</summary>
    public static readonly TimeSpan Freshness = TimeSpan.FromMilliseconds(500);

    private static readonly TimeSpan UseResolution = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, (DevicePolicy Policy, string Name, DateTimeOffset ReadAt)> _read = new();
    private readonly ConcurrentDictionary<string, DateTimeOffset> _used = new();

    public TicketHoldings Tickets { get; } = new(time);

    /// <summary>Where the policies are kept.</summary>
    public IDevicePolicyStore Store => store;

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
    public async Task<(DevicePolicy Policy, string Name)> ForDeviceAsync(string deviceId, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        if (_read.TryGetValue(deviceId, out var known) && now - known.ReadAt < Freshness) return (known.Policy, known.Name);
        var name = known.Name ?? await deviceName(deviceId, cancellationToken) ?? deviceId;
        var policy = await store.FindAsync(name, cancellationToken) ?? DevicePolicy.Default;
        _read[deviceId] = (policy, name, now);
        return (policy, name);
    }

    /// <summary>The markets the home server may connect to for a device with <paramref name="policy"/>.</summary>
    public MarketReach ReachFor(DevicePolicy policy) => new(policy.Markets, allowPrivateMarkets);

    /// <summary>Records that the device made a request (written at most every 30 s per device).</summary>
    public async Task NoteUseAsync(string deviceId, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        if (_used.TryGetValue(deviceId, out var last) && now - last < UseResolution) return;
        _used[deviceId] = now;
        var (_, name) = await ForDeviceAsync(deviceId, cancellationToken);
        await store.NoteUseAsync(name, now, cancellationToken);
    }
}
