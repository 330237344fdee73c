namespace Daiko.Home.Delegation;

/// <summary>
/// Who a handshake with a market is for: the device that asked (or whose request set it off), and on a hosted
/// node the owner of that device. Null parts are counted against no share (the owner of a home server's own
/// process; <see cref="None"/> for work no device asked for).
/// </summary>
public readonly record struct TurnHolder(string? Owner, string? Device)
{
    public static TurnHolder None => default;
}

/// <summary>
/// Turns for the home server's full handshakes with markets, shared by the whole process (a hosted node's
/// owners share one). Up to <see cref="Floor"/> run at once whatever the load; past it a new one starts only
/// while the cores have time to spare (no work waiting in the thread pool), and never more than
/// <see cref="Ceiling"/>; the rest wait their turn, first come first served, for as long as a handshake may take.
/// A handshake a terminal waits on goes before one that only fills the ticket cache ahead of need.
/// No device holds more than <see cref="DeviceShare"/> turns at once, nor (on a hosted node) one owner's devices
/// together more than <see cref="OwnerShare"/>: past its share a holder's handshakes wait while others' go ahead,
/// so a device whose markets stall (or a hosted owner's many devices) cannot hold every turn while other devices wait.
/// The shares hold however idle the cores: one device runs at most <see cref="DeviceShare"/> handshakes at once, its
/// others queued behind them. Background work for a holder at its share is refused at once rather than queued.
/// </summary>
/// <remarks>
/// Each handshake in flight holds a market connection, its buffers, transcript and key schedule, and wants the
/// cores and the card's signing pool. When the cores are the bottleneck (markets nearby, many terminals at once),
/// starting more at once does not finish more a second: it stretches every one of them, so that what each holds
/// lives long enough to reach the collector's oldest generation, and the process grows. When the markets are
/// far away the handshakes mostly wait on the network, the cores are free, and as many run as the ceiling (and each
/// device's share) lets.
/// </remarks>
public sealed class MarketHandshakeTurns
{
    /// <summary>
    /// Handshakes always let run at once, a core: enough to keep the cores busy while most wait on a market or the card
    /// (four a core, tried first, left the cores idle in a mixed load: a handshake mostly waits on its market).
    /// </summary>
    public const int FloorPerCore = 16;

    /// <summary>The most handshakes with markets in flight at once, however idle the cores (each holds a connection).</summary>
    public const int DefaultCeiling = 1024;

    private readonly object _lock = new();
    private readonly LinkedList<Waiter> _waiting = new();
    private readonly LinkedList<Waiter> _waitingInBackground = new();
    private readonly Dictionary<(string? Owner, string Device), int> _heldByDevice = new();
    private readonly Dictionary<string, int> _heldByOwner = new(StringComparer.Ordinal);
    private readonly Func<bool> _coresBusy;
    private int _inFlight;

    /// <param name="coresBusy">whether the cores have no time to spare; default: work is waiting in the thread pool.</param>
    /// <param name="deviceShare">the most turns one device holds at once; default a quarter of the floor (at least one).</param>
    /// <param name="ownerShare">the most turns one owner's devices hold together; default half the floor (at least the device share).</param>
    public MarketHandshakeTurns(int floor, int ceiling, Func<bool>? coresBusy = null, int? deviceShare = null, int? ownerShare = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(floor, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(ceiling, floor);
        Floor = floor;
        Ceiling = ceiling;
        DeviceShare = deviceShare ?? Math.Max(1, floor / 4);
        OwnerShare = ownerShare ?? Math.Max(DeviceShare, floor / 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(DeviceShare, 1, nameof(deviceShare));
        ArgumentOutOfRangeException.ThrowIfLessThan(OwnerShare, DeviceShare, nameof(ownerShare));
        _coresBusy = coresBusy ?? ThreadPoolHasWorkWaiting;
    }

    /// <summary>Turns sized to this machine: <see cref="FloorPerCore"/> a core, <see cref="DefaultCeiling"/> at most.</summary>
    public static MarketHandshakeTurns ForThisMachine()
    {
        var floor = FloorPerCore * Math.Max(2, Environment.ProcessorCount);
        // Past 64 cores the floor alone is over the default ceiling.
        return new(floor, Math.Max(DefaultCeiling, floor));
    }

    public int Floor { get; }

    public int Ceiling { get; }

    /// <summary>The most turns one device holds at once.</summary>
    public int DeviceShare { get; }

    /// <summary>The most turns one owner's devices hold together (owners are named on a hosted node only).</summary>
    public int OwnerShare { get; }

    /// <summary>Handshakes holding a turn now.</summary>
    public int InFlight
    {
        get { lock (_lock) return _inFlight; }
    }

    /// <summary>Handshakes waiting for a turn now.</summary>
    public int Waiting
    {
        get { lock (_lock) return _waiting.Count + _waitingInBackground.Count; }
    }

    private static bool ThreadPoolHasWorkWaiting() => ThreadPool.PendingWorkItemCount > 0;

    /// <summary>
    /// A turn, given back when disposed. Waits at most <paramref name="wait"/>: past it the home server is too
    /// busy for this handshake (<see cref="DelegationFailure.Busy"/>), and the request is answered so.
    /// </summary>
    /// <param name="background">no terminal waits on this handshake (it fills the ticket cache ahead of need, or checks a
    /// market): it waits while any handshake a terminal waits on does.</param>
    /// <param name="holder">who it is for: it waits while its device (or owner) holds its share.</param>
    public async Task<IDisposable> TakeAsync(TimeSpan wait, CancellationToken cancellationToken, bool background = false, TurnHolder holder = default)
    {
        // Checked before any queueing: a bound the timer refuses must not leave a waiter behind that no one would ever take.
        ArgumentOutOfRangeException.ThrowIfLessThan(wait, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(wait, TimeSpan.FromMilliseconds(int.MaxValue - 1));
        TaskCompletionSource<Turn> waiter;
        LinkedListNode<Waiter> place;
        lock (_lock)
        {
            // Every waiter that may start has (whoever still waits is at its holder's share), and a turn is free.
            if (LetWaitersInLocked() && MayStartLocked() && WithinShareLocked(holder)) return HoldLocked(holder);
            if (background && !WithinShareLocked(holder))
            {
                // Work no terminal waits on, for a holder at its share: not queued (a queue of waiters that cannot
                // start would be scanned at every turn given back); the cache is warmed, or the market checked, later.
                throw new DelegationException(DelegationFailure.Busy, $"{AtShareLocked(holder)}; the background work is left for later");
            }
            waiter = new TaskCompletionSource<Turn>(TaskCreationOptions.RunContinuationsAsynchronously);
            place = (background ? _waitingInBackground : _waiting).AddLast(new Waiter(waiter, holder));
        }
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bound.CancelAfter(wait);
        await using (bound.Token.Register(() =>
        {
            lock (_lock)
            {
                // Given a turn already: it is the waiter's, and it gives it back when done.
                if (place.List is not { } queue) return;
                queue.Remove(place);
            }
            waiter.TrySetCanceled(bound.Token);
        }))
        {
            try
            {
                return await waiter.Task;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // Which it was matters to the user: their own device's many handshakes, or the server's load.
                string? atShare;
                lock (_lock) atShare = WithinShareLocked(holder) ? null : AtShareLocked(holder);
                throw new DelegationException(DelegationFailure.Busy, atShare is not null
                    ? $"{atShare}, and none of them ended within {wait.TotalSeconds:0.#} s; let those finish (or close them), then try again"
                    : $"the home server is busy: its handshakes with markets did not make room for this one within {wait.TotalSeconds:0.#} s; try again");
            }
        }
    }

    /// <summary>Why a holder at its share waits, for its message.</summary>
    private string AtShareLocked(TurnHolder holder) =>
        holder.Device is { } device && _heldByDevice.GetValueOrDefault((holder.Owner, device)) >= DeviceShare
            ? $"the home server is busy for this device: it already has {Handshakes(DeviceShare)} with markets under way, its most at once"
            : $"the home server is busy for this owner: their devices already have {Handshakes(OwnerShare)} with markets under way, their most at once";

    private static string Handshakes(int count) => count == 1 ? "1 handshake" : $"{count} handshakes";

    private bool MayStartLocked() => _inFlight < Floor || (_inFlight < Ceiling && !_coresBusy());

    private bool WithinShareLocked(TurnHolder holder) =>
        (holder.Device is not { } device || _heldByDevice.GetValueOrDefault((holder.Owner, device)) < DeviceShare)
        && (holder.Owner is not { } owner || _heldByOwner.GetValueOrDefault(owner) < OwnerShare);

    /// <summary>
    /// Gives turns to the first waiters within their holders' shares while they may start: those a terminal waits on,
    /// then the background's. A waiter whose holder is at its share keeps its place for when the holder gives one back.
    /// </summary>
    /// <returns>false if it stopped for want of room with waiters left that could start (a newcomer must not go ahead of them).</returns>
    private bool LetWaitersInLocked()
    {
        // With no one waiting the cores are not looked at: a turn given back costs nothing more.
        while (_waiting.Count > 0 || _waitingInBackground.Count > 0)
        {
            if (!MayStartLocked()) return false;
            if ((FirstWithinShareLocked(_waiting) ?? FirstWithinShareLocked(_waitingInBackground)) is not { } next) return true;
            next.List!.Remove(next);
            next.Value.Promise.TrySetResult(HoldLocked(next.Value.Holder));
        }
        return true;
    }

    private LinkedListNode<Waiter>? FirstWithinShareLocked(LinkedList<Waiter> queue)
    {
        for (var node = queue.First; node is not null; node = node.Next)
        {
            if (WithinShareLocked(node.Value.Holder)) return node;
        }
        return null;
    }

    private Turn HoldLocked(TurnHolder holder)
    {
        _inFlight++;
        if (holder.Device is { } device) _heldByDevice[(holder.Owner, device)] = _heldByDevice.GetValueOrDefault((holder.Owner, device)) + 1;
        if (holder.Owner is { } owner) _heldByOwner[owner] = _heldByOwner.GetValueOrDefault(owner) + 1;
        return new Turn(this, holder);
    }

    private void Give(TurnHolder holder)
    {
        lock (_lock)
        {
            _inFlight--;
            if (holder.Device is { } device) Release(_heldByDevice, (holder.Owner, device));
            if (holder.Owner is { } owner) Release(_heldByOwner, owner);
            LetWaitersInLocked();
        }
    }

    /// <summary>One turn fewer for <paramref name="key"/>; a holder with none is forgotten, so the counts stay as many as the holders in flight.</summary>
    private static void Release<TKey>(Dictionary<TKey, int> held, TKey key)
        where TKey : notnull
    {
        if (held[key] == 1) held.Remove(key);
        else held[key]--;
    }

    private readonly record struct Waiter(TaskCompletionSource<Turn> Promise, TurnHolder Holder);

    private sealed class Turn(MarketHandshakeTurns owner, TurnHolder holder) : IDisposable
    {
        private int _given;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _given, 1) == 0) owner.Give(holder);
        }
    }
}
