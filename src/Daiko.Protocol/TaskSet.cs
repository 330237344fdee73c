using System.Collections.Concurrent;

namespace Daiko.Protocol;

/// <summary>
/// Tasks started but not awaited where they start (a served connection, a request handler, a
/// splice): the set owns them until they end, so whoever owns the set can wait for all that still
/// run. The tasks observe their own failures; the set only keeps them.
/// </summary>
public sealed class TaskSet
{
    private readonly ConcurrentDictionary<Task, byte> _running = new();

    public int Count => _running.Count;

    public void Track(Task task)
    {
        _running[task] = 0;
        task.ContinueWith(static (t, set) => ((TaskSet)set!)._running.TryRemove(t, out _), this,
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Completes when every task tracked so far has ended.</summary>
    public Task WhenAll() => Task.WhenAll(_running.Keys);
}
