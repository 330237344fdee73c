using System.Data.Common;

namespace Daiko.Home.Storage;

/// <summary>
/// Group commit for the store's bookkeeping (audit lines, the devices' last use, unlock sessions'
/// last touch): writes queued while one transaction commits share the next one, so a hundred requests
/// at once cost a few commits instead of a hundred. Each caller's task completes only once the
/// transaction that carried its write has committed, so a crash of the process loses none of it.
/// <para>
/// Bookkeeping does not wait for the disk at each commit: the store commits it without a flush
/// (SQLite: a handle with <c>synchronous = NORMAL</c> in WAL mode; PostgreSQL:
/// <c>synchronous_commit = off</c>) and flushes it within <see cref="FlushWithin"/> of the commit
/// (<paramref name="flush"/>, a fully synced commit; PostgreSQL's WAL writer does it by itself). A
/// power cut can lose the last second of bookkeeping; never money, PIN counters, enrollments,
/// revocations or policies, which commit with a full flush before they are acknowledged.
/// </para>
/// No thread of its own: a task writes batches while writes are queued, and ends when the queue is empty.
/// </summary>
public sealed class GroupedWrites(
    Func<CancellationToken, Task<DbConnection>> open,
    Func<DbConnection, CancellationToken, Task<DbTransaction>>? begin = null,
    Func<CancellationToken, Task>? flush = null)
{
    /// <summary>How long a committed write may wait for the disk (a power cut loses at most this much bookkeeping).</summary>
    public static readonly TimeSpan FlushWithin = TimeSpan.FromSeconds(1);

    private int _flushScheduled;
    private int _failuresInARow;

    /// <summary>Failed flushes in a row tried again a second later before the next commit has to start them over.</summary>
    private const int MaxRetries = 60;
    private long _flushes;
    private long _flushFailures;

    /// <summary>Flushes made after commits that did not wait for the disk, and flushes that failed (<see cref="ScheduleFlush"/>).</summary>
    public (long Flushes, long Failures) FlushStatistics => (Interlocked.Read(ref _flushes), Interlocked.Read(ref _flushFailures));

    /// <summary>Told of each flush that failed (the server logs it): the commits it was to cover wait for the next try.</summary>
    public Action<Exception>? FlushFailed { get; set; }

    /// <summary>The most writes one transaction carries.</summary>
    public const int MaxBatch = 256;

    private readonly object _gate = new();
    private List<Pending> _queue = [];
    private bool _writing;
    private long _commits;
    private long _writes;

    /// <summary>Commits made so far and the writes they carried.</summary>
    public (long Commits, long Writes) Statistics => (Interlocked.Read(ref _commits), Interlocked.Read(ref _writes));

    /// <summary>Runs before each batch is written, with its size (tests hold a batch open with it).</summary>
    internal Action<int>? Writing { get; set; }

    /// <summary>Writes queued and not yet taken by a commit.</summary>
    public int Waiting
    {
        get
        {
            lock (_gate) return _queue.Count;
        }
    }

    /// <summary>
    /// Queues <paramref name="write"/> for the next commit; completes with its result once that commit
    /// is durable. <paramref name="cancellationToken"/> stops the wait only: a queued write is still made.
    /// </summary>
    public Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> write, CancellationToken cancellationToken = default)
    {
        var pending = new Pending<T>(write);
        bool writer;
        lock (_gate)
        {
            _queue.Add(pending);
            writer = !_writing;
            _writing = true;
        }
        if (writer) _ = Task.Run(WriteQueuedAsync, CancellationToken.None);
        return pending.Done.Task.WaitAsync(cancellationToken);
    }

    private async Task WriteQueuedAsync()
    {
        while (true)
        {
            List<Pending> batch;
            lock (_gate)
            {
                if (_queue.Count == 0)
                {
                    _writing = false;
                    return;
                }
                if (_queue.Count <= MaxBatch)
                {
                    batch = _queue;
                    _queue = [];
                }
                else
                {
                    batch = _queue.GetRange(0, MaxBatch);
                    _queue.RemoveRange(0, MaxBatch);
                }
            }
            try
            {
                Writing?.Invoke(batch.Count);
                await using var connection = await open(CancellationToken.None);
                await using var transaction = begin is null
                    ? await connection.BeginTransactionAsync(CancellationToken.None)
                    : await begin(connection, CancellationToken.None);
                foreach (var pending in batch) await pending.RunAsync(connection, transaction);
                await transaction.CommitAsync(CancellationToken.None);
                Interlocked.Increment(ref _commits);
                Interlocked.Add(ref _writes, batch.Count);
                Volatile.Write(ref _failuresInARow, 0);
                ScheduleFlush();
                foreach (var pending in batch) pending.Commit();
            }
            catch (Exception e)
            {
                // Nothing of this batch committed: each of its callers sees why.
                foreach (var pending in batch) pending.Fail(e);
            }
        }
    }

    /// <summary>
    /// Flushes what was committed so far to the disk now; nothing to do for a store whose database
    /// server flushes by itself.
    /// </summary>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        if (flush is null) return;
        try
        {
            await flush(cancellationToken);
            Interlocked.Increment(ref _flushes);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Interlocked.Increment(ref _flushFailures);
            throw;
        }
    }

    /// <summary>
    /// What a stopping server calls: waits (a few seconds at most) for the writes still queued to
    /// commit, then flushes them all to the disk.
    /// </summary>
    public async Task DrainAsync(TimeSpan wait)
    {
        var until = DateTime.UtcNow + wait;
        while (DateTime.UtcNow < until)
        {
            lock (_gate)
            {
                if (_queue.Count == 0 && !_writing) break;
            }
            await Task.Delay(10);
        }
        await FlushAsync();
    }

    /// <summary>
    /// After a commit: one flush within <see cref="FlushWithin"/> covers it and every commit until the
    /// flush starts (a commit after that schedules the next one). A failed flush is counted, reported
    /// (<see cref="FlushFailed"/>) and tried again a second later, for a minute and for as long as commits come.
    /// </summary>
    private void ScheduleFlush()
    {
        if (flush is null || Interlocked.Exchange(ref _flushScheduled, 1) == 1) return;
        _ = FlushLaterAsync();
    }

    private async Task FlushLaterAsync()
    {
        await Task.Delay(FlushWithin).ConfigureAwait(false);
        Volatile.Write(ref _flushScheduled, 0);
        try
        {
            await FlushAsync(CancellationToken.None);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The commits it was to cover stay committed (a crash of the process loses none of them);
            // they reach the disk with the next flush that succeeds.
            FlushFailed?.Invoke(e);
            // Tried again a second later, for a minute; past that the next commit starts over (a store
            // whose file is gone does not keep a timer going for ever).
            if (Interlocked.Increment(ref _failuresInARow) < MaxRetries) ScheduleFlush();
            return;
        }
        Volatile.Write(ref _failuresInARow, 0);
    }

    private abstract class Pending
    {
        public abstract Task RunAsync(DbConnection connection, DbTransaction transaction);

        public abstract void Commit();

        public abstract void Fail(Exception e);
    }

    private sealed class Pending<T>(Func<DbConnection, DbTransaction, Task<T>> write) : Pending
    {
        private T? _result;

        public TaskCompletionSource<T> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override async Task RunAsync(DbConnection connection, DbTransaction transaction) => _result = await write(connection, transaction);

        public override void Commit() => Done.TrySetResult(_result!);

        public override void Fail(Exception e) => Done.TrySetException(e);
    }
}
