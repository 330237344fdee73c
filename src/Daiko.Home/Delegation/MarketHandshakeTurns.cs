namespace Daiko.Home.Delegation;

/// <summary>
/// Turns for the home server's full handshakes with markets, shared by the whole process (a hosted node's
/// owners share one). Up to <see cref="Floor"/> run at once whatever the load; past it a new one starts only
/// while the cores have time to spare (no work waiting in the thread pool), and never more than
/// <see cref="Ceiling"/>; the rest wait their turn, first come first served, for as long as a handshake may take.
/// A handshake a terminal waits on goes before one that only fills the ticket cache ahead of need.
/// </summary>
/// <remarks>
/// Each handshake in flight holds a market connection, its buffers, transcript and key schedule, and wants the
/// cores and the card's signing pool. When the cores are the bottleneck (markets nearby, many terminals at once),
/// starting more at once does not finish more a second: it stretches every one of them, so that what each holds
/// lives long enough to reach the collector's oldest generation, and the process grows. When the markets are
/// far away the handshakes mostly wait on the network, the cores are free, and as many run as the ceiling lets.
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
    private readonly LinkedList<TaskCompletionSource<Turn>> _waiting = new();
    private readonly LinkedList<TaskCompletionSource<Turn>> _waitingInBackground = new();
    private readonly Func<bool> _coresBusy;
    private int _inFlight;

    /// <param name="coresBusy">whether the cores have no time to spare; default: work is waiting in the thread pool.</param>
    public MarketHandshakeTurns(int floor, int ceiling, Func<bool>? coresBusy = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(floor, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(ceiling, floor);
        Floor = floor;
        Ceiling = ceiling;
        _coresBusy = coresBusy ?? ThreadPoolHasWorkWaiting;
    }

    /// <summary>Turns sized to this machine: <see cref="FloorPerCore"/> a core, <see cref="DefaultCeiling"/> at most.</summary>
    public static MarketHandshakeTurns ForThisMachine() => new(FloorPerCore * Math.Max(2, Environment.ProcessorCount), DefaultCeiling);

    public int Floor { get; }

    public int Ceiling { get; }

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
    public async Task<IDisposable> TakeAsync(TimeSpan wait, CancellationToken cancellationToken, bool background = false)
    {
        // Checked before any queueing: a bound the timer refuses must not leave a waiter behind that no one would ever take.
        ArgumentOutOfRangeException.ThrowIfLessThan(wait, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(wait, TimeSpan.FromMilliseconds(int.MaxValue - 1));
        TaskCompletionSource<Turn> waiter;
        LinkedListNode<TaskCompletionSource<Turn>> place;
        lock (_lock)
        {
            LetWaitersInLocked();
            if (_waiting.Count == 0 && (!background || _waitingInBackground.Count == 0) && MayStartLocked())
            {
                _inFlight++;
                return new Turn(this);
            }
            waiter = new TaskCompletionSource<Turn>(TaskCreationOptions.RunContinuationsAsynchronously);
            place = (background ? _waitingInBackground : _waiting).AddLast(waiter);
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
                throw new DelegationException(DelegationFailure.Busy,
                    $"the home server is busy: its handshakes with markets did not make room for this one within {wait.TotalSeconds:0.#} s; try again");
            }
        }
    }

    private bool MayStartLocked() => _inFlight < Floor || (_inFlight < Ceiling && !_coresBusy());

    /// <summary>Gives turns to the first waiters while they may start: those a terminal waits on, then the background's.</summary>
    private void LetWaitersInLocked()
    {
        while ((_waiting.First ?? _waitingInBackground.First) is { } first && MayStartLocked())
        {
            first.List!.Remove(first);
            _inFlight++;
            first.Value.TrySetResult(new Turn(this));
        }
    }

    private void Give()
    {
        lock (_lock)
        {
            _inFlight--;
            LetWaitersInLocked();
        }
    }

    private sealed class Turn(MarketHandshakeTurns owner) : IDisposable
    {
        private int _given;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _given, 1) == 0) owner.Give();
        }
    }
}
