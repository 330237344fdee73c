namespace Daiko.Home.Policy;

/// <summary>
/// The live tickets each device holds per market: every ticket handed over counts until it expires (the
/// home server cannot see a ticket used, nor dropped when the agent is told to drop its stock), so a
/// device never holds more than its policy's <c>max-tickets</c> live tickets at once, and a revoked
/// device keeps at most that many. Kept
/// in memory: a restarted home server starts counting afresh.
/// </summary>
public sealed class TicketHoldings(TimeProvider time)
{
    private readonly object _gate = new();
    private readonly Dictionary<(string Device, string Market), List<DateTimeOffset>> _held = new();

    /// <summary>Reserves a place for one more ticket, or refuses when the device already holds <paramref name="max"/> unexpired ones.</summary>
    public Reservation Reserve(string deviceId, string market, int max)
    {
        var key = (deviceId, market);
        var now = time.GetUtcNow();
        lock (_gate)
        {
            if (_held.Count >= SweepAbove) Sweep(now);
            if (!_held.TryGetValue(key, out var expiries)) _held[key] = expiries = new List<DateTimeOffset>();
            expiries.RemoveAll(e => e <= now);
            if (expiries.Count >= max) throw Full(expiries.Count, market);
            var placeholder = now + DevicePolicy.LongestTicketLifetime;
            expiries.Add(placeholder);
            return new Reservation(this, key, placeholder);
        }
    }

    /// <summary>Beyond this many (device, market) pairs, those holding no unexpired ticket are forgotten.</summary>
    private const int SweepAbove = 4096;

    private void Sweep(DateTimeOffset now)
    {
        foreach (var (key, expiries) in _held.ToList())
        {
            expiries.RemoveAll(e => e <= now);
            if (expiries.Count == 0) _held.Remove(key);
        }
    }

    /// <summary>How many unexpired tickets the device holds for the market.</summary>
    public int Count(string deviceId, string market)
    {
        var now = time.GetUtcNow();
        lock (_gate) return _held.TryGetValue((deviceId, market), out var e) ? e.Count(x => x > now) : 0;
    }

    /// <summary>
    /// How many more tickets the device may take for the market now (at least one), or the same refusal
    /// as <see cref="Reserve"/> when it already holds <paramref name="max"/>. Nothing is reserved.
    /// </summary>
    public int RoomFor(string deviceId, string market, int max)
    {
        var held = Count(deviceId, market);
        return held < max ? max - held : throw Full(held, market);
    }

    private static PolicyRefusedException Full(int held, string market) => new(PolicyRule.MaxTickets,
        $"this device already holds {held} unexpired ticket(s) for {market}, its limit; the owner can raise it with 'daiko home device policy --max-tickets'");

    private void Replace((string, string) key, DateTimeOffset placeholder, DateTimeOffset? expiresAt)
    {
        lock (_gate)
        {
            if (!_held.TryGetValue(key, out var expiries)) return;
            expiries.Remove(placeholder);
            if (expiresAt is { } e) expiries.Add(e);
            else if (expiries.Count == 0) _held.Remove(key);
        }
    }

    /// <summary>A place held for one ticket: <see cref="Handed"/> records its expiry; disposing without it gives the place back.</summary>
    public sealed class Reservation(TicketHoldings holdings, (string, string) key, DateTimeOffset placeholder) : IDisposable
    {
        private bool _done;

        public void Handed(DateTimeOffset expiresAt)
        {
            if (_done) return;
            _done = true;
            holdings.Replace(key, placeholder, expiresAt);
        }

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            holdings.Replace(key, placeholder, null);
        }
    }
}
