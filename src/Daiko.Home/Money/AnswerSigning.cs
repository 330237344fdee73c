using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace Daiko.Home.Money;

/// <summary>
/// Signs a batch's answers while the batch is still being worked through: each answer step is queued
/// as soon as its money moved, and up to <c>helpers</c> pool threads sign what is queued on the card's
/// other signing sessions while the committing thread goes on with the next operation's moves. The
/// committing thread then signs whatever is left itself and waits only for the signatures a helper
/// has in hand (<see cref="Finish"/>), never for a helper that has not started: the batch finishes even
/// when no pool thread is free. A batch of one is signed by the committing thread alone. A step makes
/// its answer from what it captured; it must not touch the batch's connection or transaction, which
/// the committing thread goes on using meanwhile. Disposal (a batch that failed before it finished)
/// signs nothing more and waits for the signatures in hand.
/// </summary>
internal sealed class AnswerSigning(int helpers, int capacity) : IDisposable
{
    private readonly ConcurrentQueue<(int Index, Func<byte[]> Step)> _queue = new();
    private readonly byte[]?[] _answers = new byte[]?[capacity];
    private readonly object _gate = new();
    private int _count;
    /// <summary>Helpers running (at most <c>helpers</c>).</summary>
    private int _running;
    /// <summary>Steps taken off the queue and not yet signed (counted before the take, so none is missed by <see cref="WaitForSignaturesInHand"/>).</summary>
    private int _inHand;
    private volatile bool _stop;
    private ExceptionDispatchInfo? _failure;

    /// <summary>Whether a signature of this batch failed (the batch will fail: nothing more needs moving).</summary>
    public bool Failed => Volatile.Read(ref _failure) is not null;

    /// <summary>Queues the step that makes the next answer (called by the committing thread only).</summary>
    public void Add(Func<byte[]> step)
    {
        if (_count == _answers.Length) throw new InvalidOperationException($"a batch signs at most {_answers.Length} answers");
        _queue.Enqueue((_count++, step));
        // The first answer waits for the committing thread (a batch of one needs no other thread); from the
        // second on, helpers sign beside the moves.
        // On the pool's global queue: Task.Run from the committing thread (a pool thread) would queue the
        // helper locally, behind a thread that is busy moving money, for another worker to steal.
        if (_count >= 2 && TakeHelperPlace()) _ = Task.Factory.StartNew(Help, CancellationToken.None, TaskCreationOptions.PreferFairness, TaskScheduler.Default);
    }

    /// <summary>
    /// Signs what is still queued, waits for the signatures helpers have in hand and returns the answers
    /// in the order their steps were added; the first signature that failed is rethrown (the batch then
    /// commits nothing).
    /// </summary>
    public byte[][] Finish()
    {
        Drain();
        WaitForSignaturesInHand();
        _stop = true;
        _failure?.Throw();
        var answers = new byte[_count][];
        for (var i = 0; i < _count; i++) answers[i] = _answers[i]!;
        return answers;
    }

    public void Dispose()
    {
        _stop = true;
        WaitForSignaturesInHand();
    }

    private bool TakeHelperPlace()
    {
        while (true)
        {
            var running = Volatile.Read(ref _running);
            if (running >= helpers) return false;
            if (Interlocked.CompareExchange(ref _running, running + 1, running) == running) return true;
        }
    }

    private void Help()
    {
        while (true)
        {
            Drain();
            Interlocked.Decrement(ref _running);
            // A step queued after the last empty look, while this helper still counted as running, found no
            // place for a new helper: take it on again rather than leave it to the committing thread.
            if (_stop || _queue.IsEmpty || !TakeHelperPlace()) return;
        }
    }

    private void Drain()
    {
        while (!_stop)
        {
            Interlocked.Increment(ref _inHand);
            try
            {
                if (!_queue.TryDequeue(out var item)) return;
                if (Failed) continue;
                try
                {
                    _answers[item.Index] = item.Step();
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
                }
            }
            finally
            {
                if (Interlocked.Decrement(ref _inHand) == 0)
                {
                    lock (_gate) Monitor.PulseAll(_gate);
                }
            }
        }
    }

    private void WaitForSignaturesInHand()
    {
        lock (_gate)
        {
            while (Volatile.Read(ref _inHand) > 0) Monitor.Wait(_gate);
        }
    }
}
