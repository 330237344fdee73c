using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace Daiko.Home.Money;

/// <summary>
/// Signs a batch's answers while the batch is still being worked through: each answer step is queued
/// as soon as its money moved, and up to <c>helpers</c> pool threads sign what is queued on the card's
/// other signing sessions while the committing thread goes on with the next operation's moves. The
/// committing thread then signs whatever is left itself (<see cref="Finish"/>), so the batch finishes
/// even when no pool thread is free. A batch of one is signed by the committing thread alone.
/// Disposal (a batch that failed before it finished) signs nothing more and waits for the helpers.
/// </summary>
internal sealed class AnswerSigning(int helpers, int capacity) : IDisposable
{
    private readonly ConcurrentQueue<(int Index, Func<byte[]> Step)> _queue = new();
    private readonly List<Task> _helpers = [];
    private readonly byte[]?[] _answers = new byte[]?[capacity];
    private int _count;
    private int _running;
    private volatile bool _stop;
    private ExceptionDispatchInfo? _failure;

    /// <summary>Queues the step that makes the next answer (called by the committing thread only).</summary>
    public void Add(Func<byte[]> step)
    {
        if (_count == _answers.Length) throw new InvalidOperationException($"a batch signs at most {_answers.Length} answers");
        _queue.Enqueue((_count++, step));
        // The first answer waits for the committing thread (a batch of one needs no other thread); from the
        // second on, helpers sign beside the moves.
        if (_count >= 2 && Volatile.Read(ref _running) < helpers)
        {
            Interlocked.Increment(ref _running);
            _helpers.Add(Task.Run(Help));
        }
    }

    /// <summary>
    /// Signs what is still queued, waits for the helpers and returns the answers in the order their steps
    /// were added; the first signature that failed is rethrown (the batch then commits nothing).
    /// </summary>
    public byte[][] Finish()
    {
        Drain();
        Task.WaitAll([.. _helpers]);
        _helpers.Clear();
        _failure?.Throw();
        var answers = new byte[_count][];
        for (var i = 0; i < _count; i++) answers[i] = _answers[i]!;
        return answers;
    }

    public void Dispose()
    {
        _stop = true;
        try
        {
            Task.WaitAll([.. _helpers]);
        }
        catch (AggregateException)
        {
            // A helper catches its signatures' failures; nothing else of it can fail that the batch needs to hear.
        }
        _helpers.Clear();
    }

    private void Help()
    {
        try
        {
            Drain();
        }
        finally
        {
            Interlocked.Decrement(ref _running);
        }
    }

    private void Drain()
    {
        while (!_stop && _queue.TryDequeue(out var item))
        {
            if (Volatile.Read(ref _failure) is not null) continue;
            try
            {
                _answers[item.Index] = item.Step();
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            }
        }
    }
}
