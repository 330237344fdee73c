using System.Data.Common;

namespace Daiko.Home.Storage;

/// <summary>
/// Group commit for the store's small writes (audit lines, the devices' last use): writes queued while
/// one transaction commits share the next one, so a hundred requests at once cost a few durable
/// commits (fsyncs) instead of a hundred. Each caller's task completes only once the transaction that
/// carried its write has committed: nothing is reported written before it is durable. No thread of its
/// own: a task writes batches while writes are queued, and ends when the queue is empty.
/// </summary>
public sealed class GroupedWrites(Func<CancellationToken, Task<DbConnection>> open)
{
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
                await using var transaction = await connection.BeginTransactionAsync(CancellationToken.None);
                foreach (var pending in batch) await pending.RunAsync(connection, transaction);
                await transaction.CommitAsync(CancellationToken.None);
                Interlocked.Increment(ref _commits);
                Interlocked.Add(ref _writes, batch.Count);
                foreach (var pending in batch) pending.Commit();
            }
            catch (Exception e)
            {
                // Nothing of this batch committed: each of its callers sees why.
                foreach (var pending in batch) pending.Fail(e);
            }
        }
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
