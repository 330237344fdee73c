namespace Daiko.Home.Policy;

/// <summary>
/// The live tickets each device holds per market: every ticket handed over counts until it expires (the
/// home server cannot see a ticket used, nor dropped when the agent is told to drop its stock), so a
/// device never holds more than its policy's <c>max-tickets</c> live tickets at once, and a revoked
/// device keeps at most that many. Kept in this process's memory (<see cref="TicketHoldings"/>) by a
/// home server alone on its store, in the store (<see cref="Storage.StoredTicketHoldings"/>) where several
/// processes serve one owner's devices (a PostgreSQL store: a hosted deployment's nodes).
/// </summary>
public interface ITicketHoldings
{
    /// <summary>Reserves a place for one more ticket, or refuses (<see cref="PolicyRule.MaxTickets"/>) when the device already holds <paramref name="max"/> unexpired ones.</summary>
    Task<ITicketPlace> ReserveAsync(string deviceId, string market, int max, CancellationToken cancellationToken);

    /// <summary>
    /// The same for a ticket already in hand (taken from the cache), recorded as handed over, counting until
    /// <paramref name="expiresAt"/>: one write where a reservation and its record are two. Refuses as <see cref="ReserveAsync"/>.
    /// </summary>
    Task<ITicketPlace> ReserveHandedAsync(string deviceId, string market, int max, DateTimeOffset expiresAt, CancellationToken cancellationToken);

    /// <summary>
    /// How many more tickets the device may take for the market now (at least one), or the same refusal
    /// as <see cref="ReserveAsync"/> when it already holds <paramref name="max"/>. Nothing is reserved.
    /// </summary>
    Task<int> RoomForAsync(string deviceId, string market, int max, CancellationToken cancellationToken);
}

/// <summary>A place held for one ticket: <see cref="HandedAsync"/> records its expiry; disposing without it gives the place back.</summary>
public interface ITicketPlace : IAsyncDisposable
{
    /// <summary>The ticket is to be handed over: it counts until <paramref name="expiresAt"/>. Throws when that cannot be recorded (the ticket must then not be handed over).</summary>
    Task HandedAsync(DateTimeOffset expiresAt, CancellationToken cancellationToken);

    /// <summary>
    /// The ticket recorded by <see cref="HandedAsync"/> never reached the device after all (the request failed after it, or its
    /// reply could not be sent): its place is given back. Best effort, never throws: a place it cannot give back counts
    /// until the ticket's expiry, one too many rather than one too few.
    /// </summary>
    Task GiveBackAsync();
}

/// <summary>
/// <see cref="ITicketHoldings"/> in this process's memory: a restarted home server starts counting afresh.
/// </summary>
public sealed class TicketHoldings(TimeProvider time) : ITicketHoldings
{
    private readonly object _gate = new();
    private readonly Dictionary<(string Device, string Market), Held> _held = new();

    /// <summary>
    /// One device's tickets for one market: the expiries of those handed over, soonest first (a heap: an owner may
    /// allow thousands, and each request costs a logarithm of them, not a pass over them all), and the places
    /// reserved for tickets not handed over yet.
    /// </summary>
    private sealed class Held
    {
        public readonly PriorityQueue<DateTimeOffset, DateTimeOffset> Expiries = new();
        public int Reserved;

        public int Count => Expiries.Count + Reserved;

        public void Expire(DateTimeOffset now)
        {
            while (Expiries.TryPeek(out _, out var soonest) && soonest <= now) Expiries.Dequeue();
        }
    }

    /// <summary>Reserves a place for one more ticket, or refuses when the device already holds <paramref name="max"/> unexpired ones.</summary>
    public Reservation Reserve(string deviceId, string market, int max)
    {
        var key = (deviceId, market);
        var now = time.GetUtcNow();
        lock (_gate)
        {
            if (_held.Count >= SweepAbove) Sweep(now);
            if (!_held.TryGetValue(key, out var held)) _held[key] = held = new Held();
            held.Expire(now);
            if (held.Count >= max) throw Full(held.Count, market);
            held.Reserved++;
            return new Reservation(this, key);
        }
    }

    /// <summary>Beyond this many (device, market) pairs, those holding no unexpired ticket are forgotten.</summary>
    private const int SweepAbove = 4096;

    private void Sweep(DateTimeOffset now)
    {
        foreach (var (key, held) in _held.ToList())
        {
            held.Expire(now);
            if (held.Count == 0) _held.Remove(key);
        }
    }

    /// <summary>How many unexpired tickets the device holds for the market (places reserved for tickets on their way included).</summary>
    public int Count(string deviceId, string market)
    {
        var now = time.GetUtcNow();
        lock (_gate)
        {
            if (!_held.TryGetValue((deviceId, market), out var held)) return 0;
            held.Expire(now);
            return held.Count;
        }
    }

    /// <summary>
    /// How many more tickets the device may take for the market now (at least one), or the same refusal
    /// as <see cref="Reserve"/> when it already holds <paramref name="max"/>. Nothing is reserved.
    /// </summary>
    public int RoomFor(string deviceId, string market, int max)
    {
        return RoomLeft(Count(deviceId, market), max, market);
    }

    /// <summary>The places left under <paramref name="max"/> with <paramref name="held"/> taken (at least one), or the refusal.</summary>
    internal static int RoomLeft(int held, int max, string market) => held < max ? max - held : throw Full(held, market);

    public Task<ITicketPlace> ReserveAsync(string deviceId, string market, int max, CancellationToken cancellationToken) =>
        Task.FromResult<ITicketPlace>(Reserve(deviceId, market, max));

    public Task<int> RoomForAsync(string deviceId, string market, int max, CancellationToken cancellationToken) =>
        Task.FromResult(RoomFor(deviceId, market, max));

    public Task<ITicketPlace> ReserveHandedAsync(string deviceId, string market, int max, DateTimeOffset expiresAt, CancellationToken cancellationToken)
    {
        var place = Reserve(deviceId, market, max);
        place.Handed(expiresAt);
        return Task.FromResult<ITicketPlace>(place);
    }

    internal static PolicyRefusedException Full(int held, string market) => new(PolicyRule.MaxTickets,
        $"this device already holds {held} unexpired ticket(s) for {market}, its limit", new PolicyRemedy("raise it", "--max-tickets"));

    /// <summary>A ticket recorded as handed over, which never reached the device, no longer counts.</summary>
    private void Forget((string, string) key, DateTimeOffset expiresAt)
    {
        lock (_gate)
        {
            if (_held.TryGetValue(key, out var held)) held.Expiries.Remove(expiresAt, out _, out _);
        }
    }

    /// <summary>A reserved place is given back, or becomes a ticket handed over that counts until <paramref name="expiresAt"/>.</summary>
    private void Settle((string, string) key, DateTimeOffset? expiresAt)
    {
        lock (_gate)
        {
            if (!_held.TryGetValue(key, out var held)) return;
            held.Reserved--;
            if (expiresAt is { } e) held.Expiries.Enqueue(e, e);
            else if (held.Count == 0) _held.Remove(key);
        }
    }

    /// <summary>A place held for one ticket: <see cref="Handed"/> records its expiry; disposing without it gives the place back.</summary>
    public sealed class Reservation(TicketHoldings holdings, (string, string) key) : ITicketPlace, IDisposable
    {
        private bool _done;
        private DateTimeOffset? _handed;

        public void Handed(DateTimeOffset expiresAt)
        {
            if (_done) return;
            _done = true;
            _handed = expiresAt;
            holdings.Settle(key, expiresAt);
        }

        public Task GiveBackAsync()
        {
            if (_handed is { } expiresAt)
            {
                _handed = null;
                holdings.Forget(key, expiresAt);
            }
            return Task.CompletedTask;
        }

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            holdings.Settle(key, null);
        }

        public Task HandedAsync(DateTimeOffset expiresAt, CancellationToken cancellationToken)
        {
            Handed(expiresAt);
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
