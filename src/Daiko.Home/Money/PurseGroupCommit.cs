using System.Data.Common;
using System.Runtime.ExceptionServices;

namespace Daiko.Home.Money;

/// <summary>How many money operations the purse committed and in how many durable commits.</summary>
/// <param name="Commits">Database commits that moved money (each one fsync and one token counter write).</param>
/// <param name="Operations">Money operations those commits carried (payments, refills, cancellations, confirmations).</param>
/// <param name="Waiting">Operations queued for the next commit right now.</param>
public sealed record PurseStatistics(long Commits, long Operations, int Waiting);

/// <summary>
/// One money operation waiting for the purse's next commit. Its work moves the money in the batch's
/// transaction and returns the step that makes its answer (the card's signature), which the batch runs
/// after every operation's moves, side by side with the others' (<see cref="PurseLedger"/>).
/// </summary>
internal sealed class PendingOperation(MoneyRequestId id, Func<DbConnection, DbTransaction, Func<byte[]>> work)
{
    public MoneyRequestId Id => id;

    public Func<DbConnection, DbTransaction, Func<byte[]>> Work => work;

    /// <summary>The answer, set only by a batch that then committed (or the stored answer of an earlier identical request).</summary>
    public byte[]? Answer { get; set; }

    public ExceptionDispatchInfo? Failure { get; set; }

    public bool Done { get; set; }
}

/// <summary>
/// Group commit: concurrent money operations share one durable commit. A caller queues its operation;
/// while a batch is being committed it waits (on the queue, not on the commit lock), and returns as
/// soon as a batch that carried its operation committed; when no batch runs and its operation is still
/// queued, it commits everything queued so far (its own included) and what arrives meanwhile as one
/// batch. Every caller returns only after the commit that carried its operation — nothing is
/// acknowledged before it is durable. No thread of its own: the callers commit.
/// </summary>
internal sealed class PurseGroupCommit(object commitLock, Action<List<PendingOperation>, Func<List<PendingOperation>, int>> commit)
{
    /// <summary>The most operations one commit carries (a batch signs each of them in the token).</summary>
    public const int MaxBatch = 128;

    private readonly object _queueLock = new();
    private readonly List<PendingOperation> _queue = [];
    private bool _committing;
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
        while (true)
        {
            lock (_queueLock)
            {
                // Callers whose operation a running batch carries wait here, not on the commit lock: they return
                // as soon as that batch committed, instead of queueing behind the next batch for the lock.
                while (!operation.Done && _committing) Monitor.Wait(_queueLock);
                if (operation.Done) break;
                _committing = true;
            }
            CommitQueued();
        }
        operation.Failure?.Throw();
        return operation.Answer!;
    }

    /// <summary>Commits what is queued (and what arrives while it is worked on) as one batch; run by one caller at a time.</summary>
    private void CommitQueued()
    {
        List<PendingOperation> batch = [];
        try
        {
            lock (commitLock)
            {
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
                    // fails with the reason, rethrown to each caller; a retry with the same id gets the
                    // stored answer if the commit did reach the database.
                    var failure = ExceptionDispatchInfo.Capture(e);
                    foreach (var pending in batch)
                    {
                        pending.Answer = null;
                        pending.Failure = failure;
                    }
                }
            }
        }
        finally
        {
            lock (_queueLock)
            {
                foreach (var pending in batch) pending.Done = true;
                _committing = false;
                Monitor.PulseAll(_queueLock);
            }
        }
    }
}
