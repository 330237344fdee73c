using System.Data.Common;
using Daiko.Home.Hosting;

namespace Daiko.Home.Money;

/// <summary>The purse's commit path: group commit of concurrent money operations, and the seal check before money moves.</summary>
public sealed partial class PurseLedger
{
    /// <summary>
    /// Runs <paramref name="work"/> once per request id, in a transaction with its stored answer, shared
    /// with the other money operations waiting at that moment (group commit: one fsync and one seal for
    /// all of them). <paramref name="work"/> moves the money and returns the step that makes the answer
    /// (the card's signature), which may run on another thread while the batch's next operations move
    /// money: it must use only what it captured, never the connection or the transaction. Completes only
    /// once that transaction is committed.
    /// </summary>
    private Task<byte[]> TransactAsync(MoneyRequestId requestId, Func<DbConnection, DbTransaction, Func<byte[]>> work) =>
        _group.RunAsync(new PendingOperation(requestId, work));

    /// <summary>Commits and operations so far (a commit carries every money operation that was waiting for it).</summary>
    public PurseStatistics Statistics => _group.Statistics;

    /// <summary>
    /// How many pool threads sign a batch's answers while the committing thread moves the money of the
    /// next operations (with it, one signer a core, at least two).
    /// </summary>
    private static readonly int SignersBesideMoves = Math.Max(2, Environment.ProcessorCount) - 1;

    /// <summary>
    /// One batch in one transaction: each operation in a savepoint of its own, so a refused one (spent
    /// purse, expired request, spend limit) is undone alone while the others go on. The card's seal is
    /// checked before anything moves (a forged, truncated or rolled-back purse is refused) and renewed
    /// once with the commit; the card's counter follows the commit. Each answer is signed once its
    /// operation's moves are done, on the card's other signing sessions while the next operations'
    /// money moves (<see cref="AnswerSigning"/>), and all are stored in the same transaction; a
    /// signature that fails fails the whole batch (nothing commits). A request that repeats one earlier
    /// in the same batch gets that one's answer.
    /// </summary>
    private void CommitBatch(List<PendingOperation> batch, Func<List<PendingOperation>, int> takeMore)
    {
        using var c = Open();
        using var writer = _store.LockPurse(c);
        using var tx = c.BeginTransaction(System.Data.IsolationLevel.Serializable);
        // Each operation of the batch runs the same statements: compiled once for the batch (SQLite).
        using var statements = PurseSql.KeepStatements(c);
        // Take the seal's row first: a payment racing on another node then waits, and on PostgreSQL
        // gives way with a serialization failure (retried by the caller) instead of reading a seal
        // older than the card's counter, which would look like a rolled-back database.
        Execute(c, tx, "UPDATE purse_seal SET counter = counter WHERE id = 1");
        long? counter = null;
        var moved = new List<PendingOperation>();
        using var signing = new AnswerSigning(SignersBesideMoves, PurseGroupCommit.MaxBatch);
        var inBatch = new Dictionary<(string, string, string), PendingOperation>();
        var repeats = new List<(PendingOperation Repeat, PendingOperation Original)>();
        // Operations queued while this batch is worked on join it (at most MaxBatch in all). Once an answer
        // failed to sign, the batch will fail whole: nothing more is moved or taken in.
        for (var i = 0; !signing.Failed && (i < batch.Count || (i == batch.Count && takeMore(batch) > 0)); i++)
        {
            var operation = batch[i];
            try
            {
                if (inBatch.TryGetValue((operation.Id.Kind, operation.Id.Party, operation.Id.Id), out var original))
                {
                    if (original.Id.MessageHash != operation.Id.MessageHash) throw PurseRequests.Conflict(operation.Id);
                    repeats.Add((operation, original));
                    continue;
                }
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
                    tx.Release("operation");
                    moved.Add(operation);
                    signing.Add(answer);
                    inBatch[(operation.Id.Kind, operation.Id.Party, operation.Id.Id)] = operation;
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
        if (moved.Count == 0)
        {
            tx.Commit();
            return;
        }
        var answers = signing.Finish();
        for (var k = 0; k < moved.Count; k++) PurseRequests.Store(c, tx, moved[k].Id, answers[k]);
        PurseSeal.Seal(c, tx, _card, counter!.Value);
        tx.Commit();
        // Answers only now: nothing is acknowledged before its commit is durable.
        for (var k = 0; k < moved.Count; k++) moved[k].Answer = answers[k];
        foreach (var (repeat, original) in repeats) repeat.Answer = original.Answer;
        _card.AdvanceSealCounter(counter.Value);
        _group.Committed(moved.Count);
        HomeMetrics.PurseCommit(moved.Count);
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
