using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Home.Money;
using Daiko.Home.Policy;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Server;
using Daiko.Money;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Money;

[Collection("home card")]
public sealed class SqlitePurseGroupCommitTests : PurseGroupCommitContract
{
    protected override IHomeStore CreateStore(string directory) => HomeStore.Sqlite(Path.Combine(directory, "home.db"));
}

[Collection("home card")]
public sealed class PostgresPurseGroupCommitTests : PurseGroupCommitContract
{
    private readonly TestDatabase _database = new(StoreKind.Postgres, "daiko-purse-group-pg");

    protected override IHomeStore CreateStore(string directory) => HomeStore.Postgres(_database.PostgresConnectionString);

    public override void Dispose()
    {
        base.Dispose();
        _database.Dispose();
    }
}

/// <summary>
/// Group commit of the purse with the real home card (SoftHSM2): concurrent payments share one durable
/// commit, each lands exactly once, and one refused inside a shared commit is undone alone. The first
/// payer is held inside its commit (its spend charge waits) until the others have queued, so they all
/// join that commit whatever the machine's scheduling.
/// </summary>
public abstract class PurseGroupCommitContract : IDisposable
{
    private const int Payers = 40;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private readonly TempDirectory _dir = new("daiko-purse-group");
    private readonly HomeCard _card;
    private readonly ECDsa _market = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa _bank = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly PurseLedger _ledger;

    protected PurseGroupCommitContract()
    {
        _card = HomeCard.Initialize(new HomeCardOptions(_dir.Path), HomeCardKeyType.P256, HomeFixture.Pin1, HomeFixture.Pin2, "admin-code-123");
        _card.EnterPin1(HomeFixture.Pin1);
        _card.EnterPin2(HomeFixture.Pin2);
        _ledger = new PurseLedger(CreateStore(_dir.Path), new HomeCardPurse(_card),
            (party, role) => (party, role) switch { ("market.test", PayeeRole.Market) => _market, ("bank.test", PayeeRole.Bank) => _bank, _ => null });
    }

    protected abstract IHomeStore CreateStore(string directory);

    public virtual void Dispose()
    {
        _card.Dispose();
        _market.Dispose();
        _bank.Dispose();
        _dir.Dispose();
    }

    private byte[] RequestOf(long amount, string id, TimeSpan? validFor = null) =>
        new PaymentRequest("market.test", "order-" + id, id, amount, "JPY", DateTimeOffset.UtcNow + (validFor ?? TimeSpan.FromMinutes(5)), "").Sign(_market);

    private void Refill(long amount, string id) =>
        _ledger.Refill(new Refill("bank.test", _card.CardId, id, amount, "JPY", DateTimeOffset.UtcNow.AddMinutes(5)).Sign(_bank));

    /// <summary>
    /// Runs <paramref name="first"/> on a thread whose commit is held open until every one of
    /// <paramref name="others"/> (each on its own thread) has queued behind it; returns each call's
    /// outcome in order (the first's, then the others').
    /// </summary>
    private List<(byte[]? Answer, Exception? Error)> WithQueuedBehindTheFirst(byte[] first, IReadOnlyList<Func<byte[]>> others)
    {
        using var othersQueued = new ManualResetEventSlim();
        using var firstInside = new ManualResetEventSlim();
        var outcomes = new (byte[]?, Exception?)[others.Count + 1];
        void Run(int i, Func<byte[]> call)
        {
            try
            {
                outcomes[i] = (call(), null);
            }
            catch (Exception e) when (e is PurseException or PolicyRefusedException or CardNotReadyException)
            {
                outcomes[i] = (null, e);
            }
        }
        var threads = new List<Thread>
        {
            new(() => Run(0, () => _ledger.Pay(first, (_, _, _, _) =>
            {
                firstInside.Set();
                Assert.True(othersQueued.Wait(Bound), "the other payers did not queue in time");
            }))),
        };
        threads[0].Start();
        Assert.True(firstInside.Wait(Bound));
        for (var i = 0; i < others.Count; i++)
        {
            var (index, call) = (i + 1, others[i]);
            threads.Add(new Thread(() => Run(index, call)));
            threads[^1].Start();
        }
        var deadline = DateTime.UtcNow + Bound;
        while (_ledger.Statistics.Waiting < others.Count && DateTime.UtcNow < deadline) Thread.Sleep(5);
        Assert.Equal(others.Count, _ledger.Statistics.Waiting);
        othersQueued.Set();
        foreach (var t in threads) Assert.True(t.Join(Bound), "a payer did not return");
        return [.. outcomes];
    }

    [Fact]
    public void ConcurrentPayments_LandExactlyOnce_AndShareCommits()
    {
        Refill(1_000_000, "r1");
        var before = _ledger.Statistics;
        var requests = Enumerable.Range(0, Payers).Select(i => RequestOf(10 + i, $"q{i}")).ToList();
        // Five payers send a request another payer also sends (a retry racing its original).
        var others = requests.Skip(1).Concat(requests.Skip(1).Take(5)).Select(r => (Func<byte[]>)(() => _ledger.Pay(r))).ToList();

        var outcomes = WithQueuedBehindTheFirst(requests[0], others);

        Assert.All(outcomes, o => Assert.Null(o.Error));
        using var cardKey = _card.PursePublicKey();
        var payments = outcomes.Select(o => MoneyCodec.Verify<Payment>(o.Answer!, cardKey)).ToList();
        Assert.Equal(Payers, payments.Select(p => p.PaymentId).Distinct().Count());
        for (var i = 0; i < 5; i++) Assert.Equal(outcomes[1 + i].Answer, outcomes[Payers + i].Answer);
        var log = _ledger.History().Where(e => e.Kind == "payment").ToList();
        Assert.Equal(payments.Take(Payers).Select(p => p.PaymentId).Order(), log.Select(e => e.Reference).Order());
        Assert.Equal(1_000_000 - Enumerable.Range(0, Payers).Sum(i => 10L + i), _ledger.Balance("JPY"));
        Assert.True(_ledger.VerifyLog());

        var after = _ledger.Statistics;
        Assert.Equal(Payers, after.Operations - before.Operations);
        // Every payer queued while the first payment was being worked on joined its commit: one for all.
        Assert.Equal(1, after.Commits - before.Commits);
        Assert.Equal(0, after.Waiting);
    }

    /// <summary>
    /// Payers queued behind a commit in progress wait without a thread each: all of them are queued from
    /// one thread while the commit ahead is held open, each call returning at once, and each is answered
    /// once that commit (which they joined) is done.
    /// </summary>
    [Fact]
    public async Task PayersWaitingForACommit_HoldNoThread_AndAreAnsweredByIt()
    {
        Refill(1_000_000, "r1");
        var before = _ledger.Statistics;
        using var release = new ManualResetEventSlim();
        using var firstInside = new ManualResetEventSlim();
        var first = Task.Run(() => _ledger.Pay(RequestOf(5, "held"), (_, _, _, _) =>
        {
            firstInside.Set();
            Assert.True(release.Wait(Bound), "the test did not release the first payment");
        }));
        Assert.True(firstInside.Wait(Bound), "the first payment never reached its transaction");
        var requests = Enumerable.Range(0, Payers).Select(i => RequestOf(10 + i, $"w{i}")).ToList();

        var queueing = Task.Run(() => requests.Select(r => _ledger.PayAsync(r)).ToList());
        var queuedInTime = queueing.Wait(TimeSpan.FromSeconds(20));
        release.Set();
        Assert.True(queuedInTime, "a payer blocked its caller's thread while a commit ahead of it was held open");
        var waiting = queueing.Result;

        var answers = await Task.WhenAll(waiting).WaitAsync(Bound);
        await first.WaitAsync(Bound);
        using var cardKey = _card.PursePublicKey();
        Assert.Equal(Payers, answers.Select(a => MoneyCodec.Verify<Payment>(a, cardKey).PaymentId).Distinct().Count());
        Assert.Equal(1_000_000 - 5 - Enumerable.Range(0, Payers).Sum(i => 10L + i), _ledger.Balance("JPY"));
        Assert.True(_ledger.VerifyLog());
        var after = _ledger.Statistics;
        Assert.Equal(Payers + 1, after.Operations - before.Operations);
        Assert.Equal(1, after.Commits - before.Commits);
    }

    [Fact]
    public void ABatchsAnswers_AreSignedSideBySide_AndReturnedOnlyAfterItsCommit()
    {
        Refill(1_000_000, "r1");
        // The first two answer signatures of the batch wait, inside the token, for each other: signed one
        // after another, the first would wait alone until the bound.
        using var bothInside = new Barrier(2);
        var met = new bool[2];
        var turn = -1;
        _card.Token.Signing!.Leased = () =>
        {
            var mine = Interlocked.Increment(ref turn);
            if (mine < 2) met[mine] = bothInside.SignalAndWait(TimeSpan.FromSeconds(20));
        };
        var before = _ledger.Statistics;
        var requests = Enumerable.Range(0, 10).Select(i => RequestOf(10 + i, $"s{i}")).ToList();

        var outcomes = WithQueuedBehindTheFirst(requests[0], [.. requests.Skip(1).Select(r => (Func<byte[]>)(() => _ledger.Pay(r)))]);

        Assert.True(met[0] && met[1], "the batch's signatures never ran two at once");
        Assert.Equal(1, _ledger.Statistics.Commits - before.Commits);
        using var cardKey = _card.PursePublicKey();
        Assert.All(outcomes, o => MoneyCodec.Verify<Payment>(o.Answer!, cardKey));
        Assert.Equal(10, outcomes.Select(o => MoneyCodec.Verify<Payment>(o.Answer!, cardKey).PaymentId).Distinct().Count());
        Assert.True(_ledger.VerifyLog());
    }

    /// <summary>
    /// An answer is signed while the batch's later operations are still moving money: the second payment's
    /// moves wait (in its spend charge) until a signature of the batch is inside the token, and that
    /// signature waits until the third payment's moves went on. Signed only after all the moves, the
    /// charge would wait alone until the bound.
    /// </summary>
    [Fact]
    public void ABatchsAnswers_AreSigned_WhileItsLaterMovesGoOn()
    {
        Refill(1_000_000, "r1");
        using var signing = new ManualResetEventSlim();
        using var movedOn = new ManualResetEventSlim();
        var signedBesideMoves = false;
        var chargedWhileSigning = false;
        _card.Token.Signing!.Leased = () =>
        {
            signing.Set();
            signedBesideMoves |= movedOn.Wait(TimeSpan.FromSeconds(20));
        };
        var requests = Enumerable.Range(0, 6).Select(i => RequestOf(10 + i, $"o{i}")).ToList();
        // The batch's second payment in the order its moves run (the payers' threads may queue in any order)
        // waits in its charge until an answer of the batch is being signed: the first one's.
        var charges = 0;
        void Charge(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction t, long amount, string currency)
        {
            if (Interlocked.Increment(ref charges) != 2) return;
            chargedWhileSigning = signing.Wait(TimeSpan.FromSeconds(20));
            movedOn.Set();
        }
        var others = Enumerable.Range(1, 4).Select(i => (Func<byte[]>)(() => _ledger.Pay(requests[i], Charge))).ToList();

        var outcomes = WithQueuedBehindTheFirst(requests[0], others);

        Assert.True(chargedWhileSigning, "no answer was being signed while the batch's later moves ran");
        Assert.True(signedBesideMoves);
        Assert.All(outcomes, o => Assert.Null(o.Error));
        using var cardKey = _card.PursePublicKey();
        Assert.Equal(5, outcomes.Select(o => MoneyCodec.Verify<Payment>(o.Answer!, cardKey).PaymentId).Distinct().Count());
        Assert.True(_ledger.VerifyLog());
    }

    /// <summary>
    /// One answer the card fails to sign fails its whole batch: no payer of it is answered, no money
    /// moves, the log and seal stay intact; the same requests, sent again, are each paid once.
    /// </summary>
    [Fact]
    public void AnAnswerTheCardFailsToSign_FailsItsWholeBatch_AndNothingMoves()
    {
        Refill(1_000, "r1");
        var signatures = 0;
        _card.Token.Signing!.Leased = () =>
        {
            if (Interlocked.Increment(ref signatures) == 3) throw new CardNotReadyException("the token failed this signature");
        };
        var before = _ledger.Statistics;
        var requests = Enumerable.Range(0, 6).Select(i => RequestOf(10, $"f{i}")).ToList();

        var outcomes = WithQueuedBehindTheFirst(requests[0], [.. requests.Skip(1).Select(r => (Func<byte[]>)(() => _ledger.Pay(r)))]);

        Assert.All(outcomes, o => Assert.Equal("the token failed this signature", Assert.IsType<CardNotReadyException>(o.Error).Message));
        Assert.Equal(1_000, _ledger.Balance("JPY"));
        Assert.DoesNotContain(_ledger.History(), e => e.Kind == "payment");
        Assert.Equal(before.Commits, _ledger.Statistics.Commits);
        Assert.True(_ledger.VerifyLog());

        _card.Token.Signing!.Leased = null;
        using var cardKey = _card.PursePublicKey();
        foreach (var request in requests) MoneyCodec.Verify<Payment>(_ledger.Pay(request), cardKey);
        Assert.Equal(940, _ledger.Balance("JPY"));
        Assert.Equal(6, _ledger.History().Count(e => e.Kind == "payment"));
        Assert.True(_ledger.VerifyLog());
    }

    [Fact]
    public void ARefusalInsideASharedCommit_IsUndoneAlone_AndTheOthersLand()
    {
        Refill(1_000, "r1");
        var overBalance = RequestOf(5_000, "big");
        var others = new List<Func<byte[]>>
        {
            () => _ledger.Pay(RequestOf(100, "ok1")),
            () => _ledger.Pay(overBalance),
            () => _ledger.Pay(RequestOf(100, "late", validFor: TimeSpan.FromMilliseconds(-1))),
            // A charge that writes (here: a balance) and then refuses: its write must be undone with it.
            () => _ledger.Pay(RequestOf(100, "limited"), (c, tx, _, _) =>
            {
                using var cmd = c.CreateCommand();
                cmd.Transaction = tx;
                cmd.CommandText = "UPDATE purse_balances SET amount = amount + 1000000";
                cmd.ExecuteNonQuery();
                throw new PolicyRefusedException(PolicyRule.SpendLimit, "over the spend limit");
            }),
            () => _ledger.Pay(RequestOf(100, "ok2")),
        };

        var outcomes = WithQueuedBehindTheFirst(RequestOf(100, "first"), others);

        Assert.Null(outcomes[0].Error);
        Assert.Null(outcomes[1].Error);
        Assert.Equal(PurseRefusal.InsufficientBalance, Assert.IsType<PurseException>(outcomes[2].Error).Refusal);
        Assert.Equal(PurseRefusal.Expired, Assert.IsType<PurseException>(outcomes[3].Error).Refusal);
        Assert.IsType<PolicyRefusedException>(outcomes[4].Error);
        Assert.Null(outcomes[5].Error);
        Assert.Equal(700, _ledger.Balance("JPY"));
        Assert.Equal([-100L, -100L, -100L], _ledger.History().Where(e => e.Kind == "payment").Select(e => e.Amount));
        Assert.True(_ledger.VerifyLog());

        // A refused request left no stored answer: once the purse holds enough, the same request is paid.
        Refill(10_000, "r2");
        _ledger.Pay(overBalance);
        Assert.Equal(5_700, _ledger.Balance("JPY"));
    }
}
