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
    private readonly Dictionary<string, long> _purges = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _deviceBytes = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly Action<TEntry>? _onDiscard;
    private readonly Func<TEntry, int>? _sizeOf;
    private readonly long _maxBytes;
    private long _bytes;
    /// <summary>No entry expires before this (a lower bound): the expiry scan of <see cref="MakeRoom"/> is skipped until then.</summary>
    private DateTimeOffset _nextExpiry = DateTimeOffset.MaxValue;
    private long _added;
    private bool _closed;

    /// <param name="onDiscard">Called for every entry that leaves the cache unused (expiry, purge), so its secret can be wiped.</param>
    /// <param name="sizeOf">
    /// The bytes an entry holds; with it the whole cache is kept under <paramref name="maxBytes"/>: expired
    /// entries go first, then the oldest of the device that holds the most bytes, so a device whose market
    /// sends large tickets (or many markets' worth) pushes out its own before any other device's.
    /// </param>
    public SessionCache(TimeProvider? time = null, Action<TEntry>? onDiscard = null, Func<TEntry, int>? sizeOf = null, long maxBytes = DefaultMaxBytes)
    {
        _time = time ?? TimeProvider.System;
        _onDiscard = onDiscard;
        _sizeOf = sizeOf;
        _maxBytes = maxBytes;
    }

    private sealed record Slot(TEntry Entry, DateTimeOffset ExpiresAt, bool SingleUse, long Order, int Size, string DeviceId);

    /// <summary>The whole cache's bytes, all devices and markets together (with a size function).</summary>
    public const long DefaultMaxBytes = 16L << 20;

    /// <summary>Bytes held now (0 without a size function).</summary>
    public long Bytes
    {
        get { lock (_gate) return _bytes; }
    }

    /// <summary>Entries kept per (device, market): a market that floods tickets cannot grow the home server.</summary>
    public const int MaxEntriesPerKey = 16;

    /// <summary>How many times the device's entries were purged (or one market's dropped) so far (taken before fetching what <see cref="Add"/> will keep).</summary>
    public long PurgesOf(string deviceId)
    {
        lock (_gate) return _purges.GetValueOrDefault(deviceId);
    }

    /// <summary>
    /// Adds an entry valid until <paramref name="expiresAt"/>; beyond <see cref="MaxEntriesPerKey"/> the oldest goes.
    /// With <paramref name="purgesBefore"/> (<see cref="PurgesOf"/> when its fetch began), an entry whose
    /// device was purged since (locked, revoked) is discarded instead: a fetch still running when the
    /// device locked leaves nothing behind it.
    /// </summary>
    /// <returns>false when the entry was discarded (for a purge, or a closed cache).</returns>
    public bool Add(MarketKey key, TEntry entry, DateTimeOffset expiresAt, bool singleUse, long? purgesBefore = null)
    {
        var discarded = new List<TEntry>();
        var kept = true;
        lock (_gate)
        {
            if (_closed || purgesBefore is { } before && _purges.GetValueOrDefault(key.DeviceId) != before)
            {
                discarded.Add(entry);
                kept = false;
            }
            else
            {
                if (!_entries.TryGetValue(key, out var slots)) _entries[key] = slots = new List<Slot>();
                var size = _sizeOf?.Invoke(entry) ?? 0;
                slots.Add(new Slot(entry, expiresAt, singleUse, _added++, size, key.DeviceId));
                Account(key.DeviceId, size);
                if (expiresAt < _nextExpiry) _nextExpiry = expiresAt;
                while (slots.Count > MaxEntriesPerKey) discarded.Add(RemoveAt(slots, 0));
                if (_bytes > _maxBytes) MakeRoom(discarded, key.DeviceId);
            }
        }
        Discard(discarded);
        return kept;
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
                        discarded.Add(RemoveAt(slots, i--));
                        continue;
                    }
                    if (fits is not null && !fits(slot.Entry)) continue;
                    found = slot.Entry;
                    if (slot.SingleUse) RemoveAt(slots, i);
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

    /// <summary>
    /// Drops what is cached for one (device, market), leaving the device's other markets. It counts as a
    /// purge of the device (<see cref="PurgesOf"/>): what a fetch begun before it brings back may be as
    /// stale and is not kept, for any market of the device (one refetch at worst, and only its own).
    /// Returns how many entries went.
    /// </summary>
    public int Drop(MarketKey key)
    {
        List<Slot>? slots;
        lock (_gate)
        {
            _purges[key.DeviceId] = _purges.GetValueOrDefault(key.DeviceId) + 1;
            if (!_entries.Remove(key, out slots)) return 0;
            Account(key.DeviceId, -slots.Sum(s => (long)s.Size));
        }
        Discard([.. slots.Select(s => s.Entry)]);
        return slots.Count;
    }

    /// <summary>
    /// Drops (and so wipes) everything cached, for every device, and whatever is added afterwards (a request
    /// still finishing): the parts that held the cache are going away.
    /// </summary>
    public void Close()
    {
        List<TEntry> discarded;
        lock (_gate)
        {
            _closed = true;
            discarded = [.. _entries.Values.SelectMany(slots => slots.Select(s => s.Entry))];
            _entries.Clear();
            _deviceBytes.Clear();
            _bytes = 0;
        }
        Discard(discarded);
    }

    /// <summary>The devices with anything cached now.</summary>
    public IReadOnlyList<string> DeviceIds()
    {
        lock (_gate) return _entries.Keys.Select(k => k.DeviceId).Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>Drops everything cached for a device (revocation, lock). Returns how many entries went.</summary>
    public int PurgeDevice(string deviceId)
    {
        var discarded = new List<TEntry>();
        lock (_gate)
        {
            _purges[deviceId] = _purges.GetValueOrDefault(deviceId) + 1;
            foreach (var key in _entries.Keys.Where(k => k.DeviceId == deviceId).ToList())
            {
                discarded.AddRange(_entries[key].Select(s => s.Entry));
                Account(deviceId, -_entries[key].Sum(s => (long)s.Size));
                _entries.Remove(key);
            }
        }
        Discard(discarded);
        return discarded.Count;
    }

    private TEntry RemoveAt(List<Slot> slots, int index)
    {
        var slot = slots[index];
        slots.RemoveAt(index);
        Account(slot.DeviceId, -slot.Size);
        return slot.Entry;
    }

    /// <summary>Counts <paramref name="delta"/> bytes to the whole cache and to the device (the caller holds the lock).</summary>
    private void Account(string deviceId, long delta)
    {
        _bytes += delta;
        var held = _deviceBytes.GetValueOrDefault(deviceId) + delta;
        if (held > 0) _deviceBytes[deviceId] = held;
        else _deviceBytes.Remove(deviceId);
    }

    /// <summary>
    /// Brings the cache back under its bytes (the caller holds the lock): expired entries first (looked for
    /// only once one may have expired), then the oldest entries of whichever device holds the most bytes at
    /// each step, <paramref name="adding"/> (the device whose entry made the cache overflow) on a tie.
    /// </summary>
    private void MakeRoom(List<TEntry> discarded, string adding)
    {
        var now = _time.GetUtcNow();
        if (_nextExpiry <= now)
        {
            var next = DateTimeOffset.MaxValue;
            foreach (var (key, slots) in _entries.ToList())
            {
                for (var i = 0; i < slots.Count; i++)
                {
                    if (slots[i].ExpiresAt <= now) discarded.Add(RemoveAt(slots, i--));
                    else if (slots[i].ExpiresAt < next) next = slots[i].ExpiresAt;
                }
                if (slots.Count == 0) _entries.Remove(key);
            }
            _nextExpiry = next;
        }
        while (_bytes > _maxBytes && _deviceBytes.Count > 0)
        {
            var largest = _deviceBytes.MaxBy(d => (d.Value, d.Key == adding ? 1 : 0)).Key;
            var (key, oldest) = _entries.Where(e => e.Key.DeviceId == largest && e.Value.Count > 0).MinBy(e => e.Value[0].Order);
            discarded.Add(RemoveAt(oldest, 0));
            if (oldest.Count == 0) _entries.Remove(key);
        }
    }

    private void Discard(List<TEntry> entries)
    {
        if (_onDiscard is null) return;
        foreach (var e in entries) _onDiscard(e);
    }
}
