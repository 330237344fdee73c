using System.Data.Common;
using System.Runtime.ExceptionServices;

namespace Daiko.Home.Money;

/// <summary>How many money operations the purse committed and in how many durable commits.</summary>
/// <param name="Commits">Database commits that moved money (each one fsync and one token counter write).</param>
/// <param name="Operations">Money operations those commits carried (payments, refills, cancellations, confirmations).</param>
/// <param name="Waiting">Operations queued for the next commit right now.</param>
public sealed record PurseStatistics(long Commits, long Operations, int Waiting);

/// <summary>One money operation waiting for the purse's next commit.</summary>
internal sealed class PendingOperation(MoneyRequestId id, Func<DbConnection, DbTransaction, byte[]> work)
{
    public MoneyRequestId Id => id;

    public Func<DbConnection, DbTransaction, byte[]> Work => work;

    /// <summary>The answer, set only by a batch that then committed (or the stored answer of an earlier identical request).</summary>
    public byte[]? Answer { get; set; }

    public ExceptionDispatchInfo? Failure { get; set; }

    public bool Done { get; set; }
}

/// <summary>
/// Group commit: concurrent money operations share one durable commit. A caller queues its operation
/// and takes the commit lock; if an earlier batch already carried it, it returns that batch's result,
/// else it works through everything queued so far (its own included) and what arrives meanwhile, then
/// commits it as one batch. Every caller returns only
/// after the commit that carried its operation — nothing is acknowledged before it is durable — and
/// waits for at most the batch in progress and its own. No thread of its own: the callers commit.
/// </summary>
internal sealed class PurseGroupCommit(object commitLock, Action<List<PendingOperation>, Func<List<PendingOperation>, int>> commit)
{
    /// <summary>The most operations one commit carries (a batch signs each of them in the token).</summary>
    public const int MaxBatch = 128;

    private readonly object _queueLock = new();
    private readonly List<PendingOperation> _queue = [];
    private long _commits;
    private long _operations;

    public PurseStatistics Statistics
    {
        get
        {
            lock (_queueLock) return new PurseStatistics(Interlocked.Read(ref _commits), Interlocked.Read(ref _operations), _queue.Count);
        }
    }

    /// <summary>Counts one commit that carried <paramref name="operations"/> money operations (called by the commit action after its commit).</summary>
    public void Committed(int operations)
    {
        Interlocked.Increment(ref _commits);
        Interlocked.Add(ref _operations, operations);
    }

    /// <summary>
    /// Adds to <paramref name="batch"/> what was queued while it was being worked on (up to
    /// <see cref="MaxBatch"/>); returns how many. The batch commits once this finds nothing more, so
    /// payers who arrive while a batch runs share its commit instead of starting the next one.
    /// </summary>
    public int TakeMore(List<PendingOperation> batch)
    {
        lock (_queueLock)
        {
            var more = Math.Min(MaxBatch - batch.Count, _queue.Count);
            if (more <= 0) return 0;
            batch.AddRange(_queue.GetRange(0, more));
            _queue.RemoveRange(0, more);
            return more;
        }
    }

    public byte[] Run(PendingOperation operation)
    {
        lock (_queueLock) _queue.Add(operation);
        lock (commitLock)
        {
            while (!operation.Done)
            {
                List<PendingOperation> batch;
                lock (_queueLock)
                {
                    batch = _queue.GetRange(0, Math.Min(MaxBatch, _queue.Count));
                    _queue.RemoveRange(0, batch.Count);
                }
                try
                {
                    commit(batch, TakeMore);
                }
                catch (Exception e)
                {
                    // The batch did not commit (or its card counter did not follow): every operation in it
                    // fails with the reason, rethrown to each caller below; a retry with the same id gets
                    // the stored answer if the commit did reach the database.
                    var failure = ExceptionDispatchInfo.Capture(e);
                    foreach (var pending in batch)
                    {
                        pending.Answer = null;
                        pending.Failure = failure;
                    }
                }
                finally
                {
                    foreach (var pending in batch) pending.Done = true;
                }
            }
        }
        operation.Failure?.Throw();
        return operation.Answer!;
    }
}
