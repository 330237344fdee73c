using System.Data.Common;
using Daiko.Home.Hosting;

namespace Daiko.Home.Money;

/// <summary>The purse's commit path: group commit of concurrent money operations, and the seal check before money moves.</summary>
public sealed partial class PurseLedger
{
    /// <summary>
    /// Runs <paramref name="work"/> once per request id, in a transaction with its stored answer, shared
    /// with the other money operations waiting at that moment (group commit: one fsync and one seal for
    /// all of them). Returns only once that transaction is committed.
    /// </summary>
    private byte[] Transact(MoneyRequestId requestId, Func<DbConnection, DbTransaction, byte[]> work) =>
        _group.Run(new PendingOperation(requestId, work));

    /// <summary>Commits and operations so far (a commit carries every money operation that was waiting for it).</summary>
    public PurseStatistics Statistics => _group.Statistics;

    /// <summary>
    /// One batch in one transaction: each operation in a savepoint of its own, so a refused one (spent
    /// purse, expired request, spend limit) is undone alone while the others go on. The card's seal is
    /// checked before anything moves (a forged, truncated or rolled-back purse is refused) and renewed
    /// once with the commit; the card's counter follows the commit.
    /// </summary>
    private void CommitBatch(List<PendingOperation> batch, Func<List<PendingOperation>, int> takeMore)
    {
        using var c = Open();
        using var tx = c.BeginTransaction(System.Data.IsolationLevel.Serializable);
        // Take the seal's row first: a payment racing on another node then waits, and on PostgreSQL
        // gives way with a serialization failure (retried by the caller) instead of reading a seal
        // older than the card's counter, which would look like a rolled-back database.
        Execute(c, tx, "UPDATE purse_seal SET counter = counter WHERE id = 1");
        long? counter = null;
        var moved = 0;
        // Operations queued while this batch is worked on join it (at most MaxBatch in all).
        for (var i = 0; i < batch.Count || (i == batch.Count && takeMore(batch) > 0); i++)
        {
            var operation = batch[i];
            try
            {
                if (PurseRequests.Find(c, tx, operation.Id) is { } previous)
                {
                    operation.Answer = previous;
                    continue;
                }
                RequireReady();
                counter ??= CheckSeal(c, tx) + 1;
                tx.Save("operation");
                try
                {
                    var answer = operation.Work(c, tx);
                    PurseRequests.Store(c, tx, operation.Id, answer);
                    tx.Release("operation");
                    operation.Answer = answer;
                    moved++;
                }
                catch (Exception e) when (e is not DbException)
                {
                    tx.Rollback("operation");
                    tx.Release("operation");
                    throw;
                }
            }
            catch (Exception e) when (e is not DbException)
            {
                // This operation is refused alone; a database failure fails the whole batch (nothing commits).
                operation.Failure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
            }
        }
        if (moved > 0) PurseSeal.Seal(c, tx, _card, counter!.Value);
        tx.Commit();
        if (moved == 0) return;
        _card.AdvanceSealCounter(counter!.Value);
        _group.Committed(moved);
        HomeMetrics.PurseCommit(moved);
    }

    /// <summary>
    /// The seal check before money moves: the whole chain when none was checked in this process yet or
    /// when rows of the log were updated or deleted since (the store counts such edits by trigger; a
    /// missing trigger counts as an edit), else only the seal, the counter and the log's last entry.
    /// </summary>
    private long CheckSeal(DbConnection c, DbTransaction tx)
    {
        var edits = PurseSeal.LogEdits(c, tx, _store.PurseLogEditsQuery);
        if (_checkedEdits is { } seen && edits == seen) return PurseSeal.CheckTail(c, tx, _card);
        _checkedEdits = null;
        var counter = PurseSeal.Check(c, tx, _card);
        _checkedEdits = edits;
        return counter;
    }
}
