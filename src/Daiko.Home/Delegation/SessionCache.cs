namespace Daiko.Home.Delegation;

/// <summary>
/// The session cache of F6 (seed Figs. 15-16): secrets obtained for a market are kept per
/// (device, market) and reused without a new handshake while valid. Entries expire, single-use
/// entries are handed out once, and everything cached for a device is purged when it is revoked.
/// Thread-safe. Entries are kept in memory only: a restarted home server starts cold, and nothing
/// secret reaches disk.
/// </summary>
public sealed class SessionCache<TEntry>
    where TEntry : class
{
    private readonly object _gate = new();
    private readonly Dictionary<MarketKey, List<Slot>> _entries = new();
    private readonly TimeProvider _time;
    private readonly Action<TEntry>? _onDiscard;

    /// <param name="onDiscard">Called for every entry that leaves the cache unused (expiry, purge), so its secret can be wiped.</param>
    public SessionCache(TimeProvider? time = null, Action<TEntry>? onDiscard = null)
    {
        _time = time ?? TimeProvider.System;
        _onDiscard = onDiscard;
    }

    private sealed record Slot(TEntry Entry, DateTimeOffset ExpiresAt, bool SingleUse);

    /// <summary>Entries kept per (device, market): a market that floods tickets cannot grow the home server.</summary>
    public const int MaxEntriesPerKey = 16;

    /// <summary>Adds an entry valid until <paramref name="expiresAt"/>; beyond <see cref="MaxEntriesPerKey"/> the oldest goes.</summary>
    public void Add(MarketKey key, TEntry entry, DateTimeOffset expiresAt, bool singleUse)
    {
        var discarded = new List<TEntry>();
        lock (_gate)
        {
            if (!_entries.TryGetValue(key, out var slots)) _entries[key] = slots = new List<Slot>();
            slots.Add(new Slot(entry, expiresAt, singleUse));
            while (slots.Count > MaxEntriesPerKey)
            {
                discarded.Add(slots[0].Entry);
                slots.RemoveAt(0);
            }
        }
        Discard(discarded);
    }

    /// <summary>
    /// Takes a valid entry for <paramref name="key"/>: a single-use entry leaves the cache, a reusable
    /// one stays. Expired entries met on the way are discarded; entries that do not <paramref name="fits"/> stay.
    /// </summary>
    public TEntry? TryTake(MarketKey key, Func<TEntry, bool>? fits = null)
    {
        var discarded = new List<TEntry>();
        TEntry? found = null;
        lock (_gate)
        {
            if (_entries.TryGetValue(key, out var slots))
            {
                var now = _time.GetUtcNow();
                for (var i = 0; i < slots.Count; i++)
                {
                    var slot = slots[i];
                    if (slot.ExpiresAt <= now)
                    {
                        discarded.Add(slot.Entry);
                        slots.RemoveAt(i--);
                        continue;
                    }
                    if (fits is not null && !fits(slot.Entry)) continue;
                    found = slot.Entry;
                    if (slot.SingleUse) slots.RemoveAt(i);
                    break;
                }
                if (slots.Count == 0) _entries.Remove(key);
            }
        }
        Discard(discarded);
        return found;
    }

    /// <summary>How many valid entries are ready for <paramref name="key"/> (for prefetching).</summary>
    public int Count(MarketKey key)
    {
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            return _entries.TryGetValue(key, out var slots) ? slots.Count(s => s.ExpiresAt > now) : 0;
        }
    }

    /// <summary>Valid entries per market host and port, over all devices (counts only, for the owner's console).</summary>
    public IReadOnlyList<(string Market, int Entries)> CountsByMarket()
    {
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            return _entries.GroupBy(e => $"{e.Key.Host}:{e.Key.Port}")
                .Select(g => (g.Key, g.Sum(e => e.Value.Count(s => s.ExpiresAt > now))))
                .Where(m => m.Item2 > 0).OrderBy(m => m.Key, StringComparer.Ordinal).ToList();
        }
    }

    /// <summary>Drops everything cached for a device (revocation, lock). Returns how many entries went.</summary>
    public int PurgeDevice(string deviceId)
    {
        var discarded = new List<TEntry>();
        lock (_gate)
        {
            foreach (var key in _entries.Keys.Where(k => k.DeviceId == deviceId).ToList())
            {
                discarded.AddRange(_entries[key].Select(s => s.Entry));
                _entries.Remove(key);
            }
        }
        Discard(discarded);
        return discarded.Count;
    }

    private void Discard(List<TEntry> entries)
    {
        if (_onDiscard is null) return;
        foreach (var e in entries) _onDiscard(e);
    }
}
