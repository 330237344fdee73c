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
/// as soon as those moves are done, on another thread while the next operations' money moves
/// (<see cref="AnswerSigning"/>): the step uses only what it captured, never the connection or transaction.
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
/// acknowledged before it is durable. No thread of its own: the callers commit, and the others wait
/// asynchronously.
/// </summary>
internal sealed class PurseGroupCommit(object commitLock, Action<List<PendingOperation>, Func<List<PendingOperation>, int>> commit)
{
    /// <summary>The most operations one commit carries (a batch signs each of them in the token).</summary>
    public const int MaxBatch = 128;

    /// <summary>How often a batch that lost a race with another process's commit is worked through again.</summary>
    public const int ConflictAttempts = 12;
    private const string SerializationFailure = "40001";
    private const string DeadlockDetected = "40P01";

    private readonly object _queueLock = new();
    private readonly List<PendingOperation> _queue = [];
    /// <summary>The batch being committed, completed when it ends; null while none is (waiters continue on pool threads, not the committer's).</summary>
    private TaskCompletionSource? _batchEnded;
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

    /// <summary>
    /// Queues <paramref name="operation"/> and returns its answer once a commit carried it. While another
    /// caller's batch is being committed it waits without holding a thread (many payers waiting at once
    /// would otherwise each block a thread-pool thread, and the runtime would add threads for them); when
    /// no batch runs and its operation is still queued, it commits the queue itself, on its own thread.
    /// </summary>
    public async Task<byte[]> RunAsync(PendingOperation operation)
    {
        lock (_queueLock) _queue.Add(operation);
        while (true)
        {
            Task? batchEnded = null;
            lock (_queueLock)
            {
                if (operation.Done) break;
                // Callers whose operation a running batch carries wait here, not on the commit lock: they return
                // as soon as that batch committed, instead of queueing behind the next batch for the lock.
                if (_batchEnded is { } running) batchEnded = running.Task;
                else _batchEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            if (batchEnded is null) CommitQueued();
            else await batchEnded.ConfigureAwait(false);
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
                    CommitRetryingConflicts(batch);
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
            TaskCompletionSource? ended;
            lock (_queueLock)
            {
                foreach (var pending in batch) pending.Done = true;
                (ended, _batchEnded) = (_batchEnded, null);
            }
            ended?.SetResult();
        }
    }

    /// <summary>
    /// Commits a batch; a batch that lost a race with another process's commit on the same purse (the
    /// nodes of a hosted deployment: a serialization failure or deadlock, nothing of it committed) is
    /// worked through again from the start, a few times, before its callers hear of it. A retried
    /// operation whose first attempt did commit finds its stored answer, so none is applied twice.
    /// </summary>
    private void CommitRetryingConflicts(List<PendingOperation> batch)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                commit(batch, TakeMore);
                return;
            }
            catch (DbException e) when (LostRace(e) && attempt < ConflictAttempts)
            {
                foreach (var pending in batch)
                {
                    pending.Answer = null;
                    pending.Failure = null;
                }
                BackOff(attempt);
            }
        }
    }

    /// <summary>Whether a transaction on the purse lost a race with another process's (nothing of it committed; it may be run again).</summary>
    public static bool LostRace(DbException e) => e.SqlState is SerializationFailure or DeadlockDetected;

    /// <summary>A short random pause before attempt <paramref name="attempt"/> + 1, so that racing processes part.</summary>
    public static void BackOff(int attempt) => Thread.Sleep(Random.Shared.Next(1, 4 * attempt));
}
