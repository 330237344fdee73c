using System.Net;
using System.Net.Sockets;

namespace Daiko.Home.Devices;

/// <summary>
/// Failed enrollment attempts, counted per source address (an IPv6 address by its /64). Only failures
/// count. After <see cref="FreeFailures"/> failures a key waits 1 s, then 2 s, 4 s … up to
/// <see cref="MaxWait"/> after its last failure before it is heard again; a key with no failure for
/// <see cref="ForgetAfter"/> starts afresh. One address's failures never hold back another address: a
/// stranger guessing codes from one address does not keep the owner's correct code, sent from another,
/// out. Nor are failures counted per code: a code's 60-bit secret and its 10 minutes need no such count,
/// and one would let a stranger who found a pending code's public id keep that code out.
/// </summary>
public sealed class EnrollmentLimiter(TimeProvider? time = null)
{
    public const int FreeFailures = 5;
    public static readonly TimeSpan MaxWait = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan ForgetAfter = TimeSpan.FromMinutes(15);
    /// <summary>The most keys kept: past it, keys no longer waiting go, then the one heard longest ago.</summary>
    public const int MaxKeys = 100_000;

    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, (int Failures, DateTimeOffset Last)> _failures = new(StringComparer.Ordinal);
    private DateTimeOffset _prunedAt = DateTimeOffset.MinValue;

    public static string AddressKey(IPAddress address)
    {
        address = address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        if (address.AddressFamily != AddressFamily.InterNetworkV6) return "address " + address;
        var bytes = address.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return "address " + new IPAddress(bytes) + "/64";
    }

    /// <summary>How long <paramref name="key"/> must still wait before an attempt is heard; null: now.</summary>
    public TimeSpan? WaitFor(string key)
    {
        lock (_gate)
        {
            if (!_failures.TryGetValue(key, out var entry) || entry.Failures < FreeFailures) return null;
            var wait = Backoff(entry.Failures) - (_time.GetUtcNow() - entry.Last);
            return wait > TimeSpan.Zero ? wait : null;
        }
    }

    /// <summary>How many keys are kept now.</summary>
    internal int Count
    {
        get
        {
            lock (_gate) return _failures.Count;
        }
    }

    public void Failed(string key)
    {
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            var known = _failures.TryGetValue(key, out var entry);
            if (!known && _failures.Count >= MaxKeys)
            {
                // A scan of the whole table at most once a second, however many new keys come.
                if (now - _prunedAt >= TimeSpan.FromSeconds(1)) Prune(now);
                // Still full of keys that must wait: the one heard longest ago goes, so that the table stays bounded.
                if (_failures.Count >= MaxKeys) _failures.Remove(_failures.MinBy(p => p.Value.Last).Key);
            }
            var failures = known && now - entry.Last < ForgetAfter ? entry.Failures : 0;
            _failures[key] = (failures + 1, now);
        }
    }

    private static TimeSpan Backoff(int failures)
    {
        // Below the free failures there is no wait (1 << a negative count would be a huge one, or none).
        if (failures < FreeFailures) return TimeSpan.Zero;
        var doublings = Math.Min(failures - FreeFailures, 20);
        var wait = TimeSpan.FromSeconds(1 << doublings);
        return wait < MaxWait ? wait : MaxWait;
    }

    private void Prune(DateTimeOffset now)
    {
        _prunedAt = now;
        foreach (var (key, entry) in _failures.ToList())
        {
            if (now - entry.Last >= ForgetAfter || now - entry.Last >= Backoff(entry.Failures)) _failures.Remove(key);
        }
    }
}
