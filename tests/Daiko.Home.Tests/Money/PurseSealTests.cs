using System.Data.Common;
using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Money;
using Daiko.Home.Money;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Server;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Money;

/// <summary>The card's seal on a real SQLite file and a real SoftHSM2 token.</summary>
[Collection("home card")]
public sealed class SqlitePurseSealTests() : PurseSealContract(StoreKind.Sqlite)
{

    [Fact]
    public void ACopyOfHomeDbFromBeforeAPayment_IsRefusedByTheCurrentToken()
    {
        Ledger.Refill(RefillOf(1_000));
        var backup = Path.Combine(Directory, "backup");
        System.IO.Directory.CreateDirectory(backup);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        CopyDatabase(Directory, backup);

        Ledger.Pay(RequestOf(400, "spent"));
        Assert.Equal(600, Ledger.Balance("JPY"));
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        CopyDatabase(backup, Directory);
        Assert.Equal(1_000, Ledger.Balance("JPY"));
        Assert.True(Ledger.VerifyLog(), "the old copy is a consistent, correctly sealed purse: only the token's counter can tell");

        AssertRefusedAndNothingMoves("rolled back");
    }

    private static void CopyDatabase(string from, string to)
    {
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            var source = Path.Combine(from, "home.db" + suffix);
            var target = Path.Combine(to, "home.db" + suffix);
            if (File.Exists(source)) File.Copy(source, target, overwrite: true);
            else File.Delete(target);
        }
    }
}

/// <summary>The same on a real PostgreSQL server.</summary>
[Collection("home card")]
public sealed class PostgresPurseSealTests() : PurseSealContract(StoreKind.Postgres)
{
    protected override string DropEditTriggerSql => "DROP TRIGGER purse_log_edited ON purse_log";

    /// <summary>
    /// A hosted deployment keeps each owner's purse in a schema of its own, every one with a trigger of
    /// the same name: another owner's trigger must not stand in for this purse's dropped one.
    /// </summary>
    [Fact]
    public void AnotherOwnersEditTrigger_DoesNotStandInForThisPursesDroppedOne()
    {
        ThreeEntries();
        using (var admin = new Npgsql.NpgsqlConnection(PostgresConnectionString))
        {
            admin.Open();
            using var create = admin.CreateCommand();
            create.CommandText = "CREATE SCHEMA other_owner";
            create.ExecuteNonQuery();
        }
        using (var source = Npgsql.NpgsqlDataSource.Create(PostgresConnectionString))
        {
            var other = HomeStore.Postgres(source, "other_owner");
            using var c = other.Open();
            using var schema = c.CreateCommand();
            schema.CommandText = other.Schema;
            schema.ExecuteNonQuery();
        }
        Sql(DropEditTriggerSql);
        using (var admin = new Npgsql.NpgsqlConnection(PostgresConnectionString))
        {
            admin.Open();
            using var triggers = admin.CreateCommand();
            triggers.CommandText = "SELECT string_agg(tgrelid::regclass::text, ',') FROM pg_trigger WHERE tgname = 'purse_log_edited'";
            Assert.Equal("other_owner.purse_log", triggers.ExecuteScalar());
        }
        Sql("UPDATE purse_log SET ref = 'someone-else' WHERE seq = 2");

        AssertRefusedAndNothingMoves("altered");
    }
}

/// <summary>
/// Every way of editing the purse's rows on disk is refused by Pay, Refill and Cancel before anything
/// moves; a rolled-back purse meets the token's counter; a purse from before the seal is sealed once.
/// </summary>
public abstract class PurseSealContract : PurseContract
{
    private string? _paymentId;

    protected PurseSealContract(StoreKind kind)
        : base(kind, "daiko-seal", "card-a")
    {
        Ledger = NewLedger();
    }

    /// <summary>What an attacker runs to stop the store counting edits of the log.</summary>
    protected virtual string DropEditTriggerSql => "DROP TRIGGER purse_log_updated";

    protected string Directory => Dir;

    protected PurseLedger Ledger { get; private set; }

    protected byte[] RefillOf(long amount, string id = "r1") =>
        new Refill("bank.test", Card.CardId, id, amount, "JPY", DateTimeOffset.UtcNow.AddMinutes(5)).Sign(Bank);

    protected byte[] RequestOf(long amount, string id = "q1") =>
        new PaymentRequest("market.test", "order-" + id, id, amount, "JPY", DateTimeOffset.UtcNow.AddMinutes(5), "").Sign(Market);

    /// <summary>A refill, two payments: a purse with three log entries and a payment still cancellable.</summary>
    protected void ThreeEntries()
    {
        Ledger.Refill(RefillOf(1_000));
        Ledger.Pay(RequestOf(100, "first"));
        using var purse = Card.PursePublicKey();
        _paymentId = MoneyCodec.Verify<Payment>(Ledger.Pay(RequestOf(200, "second")), purse).PaymentId;
        Assert.Equal(700, Ledger.Balance("JPY"));
    }

    protected void Sql(string sql)
    {
        using var c = OpenedStore.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    private (long Balance, long LogRows, long Payments, long Answers) Snapshot()
    {
        using var c = OpenedStore.Open();
        long Scalar(string sql)
        {
            using var cmd = c.CreateCommand();
            cmd.CommandText = sql;
            return Convert.ToInt64(cmd.ExecuteScalar() ?? 0L, System.Globalization.CultureInfo.InvariantCulture);
        }
        return (Scalar("SELECT COALESCE(SUM(amount), 0) FROM purse_balances"), Scalar("SELECT COUNT(*) FROM purse_log"),
            Scalar("SELECT COUNT(*) FROM purse_payments WHERE state = 'paid'"), Scalar("SELECT COUNT(*) FROM purse_answers"));
    }

    /// <summary>Pay, Refill and Cancel each refuse with SealBroken, and no row changes.</summary>
    protected void AssertRefusedAndNothingMoves(string expectedReason)
    {
        var before = Snapshot();
        var refusals = new List<PurseException>
        {
            Assert.Throws<PurseException>(() => Ledger.Pay(RequestOf(50, "after"))),
            Assert.Throws<PurseException>(() => Ledger.Refill(RefillOf(500, "r-after"))),
        };
        if (_paymentId is not null) refusals.Add(Assert.Throws<PurseException>(() => Ledger.Cancel(_paymentId)));
        foreach (var e in refusals)
        {
            Assert.Equal(PurseRefusal.SealBroken, e.Refusal);
            Assert.Contains(expectedReason, e.Message, StringComparison.Ordinal);
            Assert.Contains("nothing was moved", e.Message, StringComparison.Ordinal);
        }
        Assert.Equal(before, Snapshot());
    }

    /// <summary>
    /// The card as another node's process may see a shared token for a moment: its counter read
    /// <paramref name="behind"/> below the truth, the first <paramref name="staleReads"/> times.
    /// </summary>
    private sealed class LaggingCounterCard(IPurseCard card, long behind, int staleReads) : IPurseCard
    {
        public int Reads { get; private set; }

        public string CardId => card.CardId;

        public bool CryptoReady => card.CryptoReady;

        public IMoneySigner OpenSigningKey() => card.OpenSigningKey();

        public ECDsa PurseKey() => card.PurseKey();

        public long? ReadSealCounter() => ++Reads <= staleReads ? card.ReadSealCounter() - behind : card.ReadSealCounter();

        public void AdvanceSealCounter(long value) => card.AdvanceSealCounter(value);
    }

    [Fact]
    public void ACounterReadStaleForAMoment_IsReadAgain_AndThePaymentGoesThrough()
    {
        ThreeEntries();
        var lagging = new LaggingCounterCard(new HomeCardPurse(Card), behind: 2, staleReads: 2);
        var ledger = new PurseLedger(OpenedStore, lagging, KeyOf);

        ledger.Pay(RequestOf(50, "after-lag"));

        Assert.True(lagging.Reads >= 3, $"the counter was read {lagging.Reads} times");
        Assert.Equal(650, ledger.Balance("JPY"));
        Assert.True(ledger.VerifyLog());
    }

    [Fact]
    public void ACardThatStaysBehindTheDatabase_IsRefused_AndNothingMoves()
    {
        ThreeEntries();
        var lagging = new LaggingCounterCard(new HomeCardPurse(Card), behind: 2, staleReads: int.MaxValue);
        var ledger = new PurseLedger(OpenedStore, lagging, KeyOf);

        var e = Assert.Throws<PurseException>(() => ledger.Pay(RequestOf(50, "after-lag")));

        Assert.Equal(PurseRefusal.SealBroken, e.Refusal);
        Assert.Contains("is ahead of the home card", e.Message, StringComparison.Ordinal);
        Assert.Equal(1 + PurseSeal.StaleCounterRereads, lagging.Reads);
        Assert.Equal(700, Ledger.Balance("JPY"));
    }

    [Fact]
    public void ARaisedBalanceRow_IsRefused_EvenWhenThePaymentWouldFit()
    {
        ThreeEntries();
        Sql("UPDATE purse_balances SET amount = 200000");
        AssertRefusedAndNothingMoves("altered");
    }

    [Fact]
    public void AnEditedLogRow_IsRefused()
    {
        ThreeEntries();
        Sql("UPDATE purse_log SET ref = 'someone-else' WHERE seq = 2");
        AssertRefusedAndNothingMoves("altered");
    }

    [Fact]
    public void AnOldLogRowEditedWhileRunning_WithTheEditCountPutBack_IsCaughtByTheNextHistoryRead()
    {
        ThreeEntries();
        Sql("UPDATE purse_log SET ref = 'someone-else' WHERE seq = 2");
        Sql("UPDATE purse_log_edits SET edits = 0");

        // Operations check the seal and the tail only; the history (and each report) re-checks the whole chain.
        Assert.False(Ledger.VerifyLog());
        AssertRefusedAndNothingMoves("altered");
    }

    [Fact]
    public void AnOldLogRowEditedWhileRunning_WithTheEditCountPutBack_IsRefusedAtTheNextUnlock()
    {
        ThreeEntries();
        Sql("UPDATE purse_log SET ref = 'someone-else' WHERE seq = 2");
        Sql("UPDATE purse_log_edits SET edits = 0");

        Assert.Equal(PurseRefusal.SealBroken, Assert.Throws<PurseException>(() => Ledger.SealIfUnsealed()).Refusal);
        AssertRefusedAndNothingMoves("altered");
    }

    [Fact]
    public void WithTheEditTriggerDropped_EveryOperationChecksTheWholeChain()
    {
        ThreeEntries();
        Sql(DropEditTriggerSql);
        Sql("UPDATE purse_log SET ref = 'someone-else' WHERE seq = 2");

        AssertRefusedAndNothingMoves("altered");
    }

    [Fact]
    public void ATruncatedLog_WithTheBalanceMadeToMatch_IsRefusedByTheSeal()
    {
        ThreeEntries();
        // Drop the last payment and give its money back: the chain and the sums still hold, only the seal knows.
        Sql("DELETE FROM purse_log WHERE seq = 3");
        Sql("UPDATE purse_balances SET amount = 900");
        Assert.True(Ledger.VerifyLog());
        AssertRefusedAndNothingMoves("do not match");
    }

    [Fact]
    public void ReorderedLogRows_AreRefused()
    {
        ThreeEntries();
        Sql("UPDATE purse_log SET seq = -1 WHERE seq = 2");
        Sql("UPDATE purse_log SET seq = 2 WHERE seq = 3");
        Sql("UPDATE purse_log SET seq = 3 WHERE seq = -1");
        AssertRefusedAndNothingMoves("altered");
    }

    [Fact]
    public void AnOlderCorrectlySealedState_IsRefusedByTheTokensCounter()
    {
        Ledger.Refill(RefillOf(1_000));
        byte[] seal;
        using (var c = OpenedStore.Open())
        using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = "SELECT seal FROM purse_seal";
            seal = (byte[])cmd.ExecuteScalar()!;
        }
        Ledger.Pay(RequestOf(400, "spent"));
        // Put back the whole earlier state: balance, log and the card's own seal of that time.
        Sql("DELETE FROM purse_log WHERE seq > 1");
        Sql("DELETE FROM purse_payments");
        Sql("UPDATE purse_balances SET amount = 1000");
        using (var c = OpenedStore.Open())
        using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = "UPDATE purse_seal SET counter = 1, seal = @s";
            var p = cmd.CreateParameter();
            p.ParameterName = "@s";
            p.Value = seal;
            cmd.Parameters.Add(p);
            cmd.ExecuteNonQuery();
        }
        Assert.Equal(1_000, Ledger.Balance("JPY"));
        AssertRefusedAndNothingMoves("rolled back");
    }

    [Fact]
    public void APurseFromBeforeTheSeal_IsSealedOnceAtUnlock_AfterItsLogVerifies()
    {
        Ledger.Refill(RefillOf(1_000));
        Ledger.Pay(RequestOf(300, "old"));
        // The same purse as an older version left it: no seal, and a card whose token never kept a counter.
        Sql("DELETE FROM purse_seal");
        Card.Dispose();
        Card = UnlockedCard(Path.Combine(Dir, "card-b"));
        Ledger = NewLedger();

        Ledger.SealIfUnsealed();
        Ledger.SealIfUnsealed();
        Assert.Equal(1, Card.ReadPurseCounter());
        Ledger.Pay(RequestOf(200, "new"));
        Assert.Equal(500, Ledger.Balance("JPY"));
        Assert.Equal(2, Card.ReadPurseCounter());
    }

    [Fact]
    public void AnUnsealedPurseWithABrokenLog_IsNotSealed()
    {
        Ledger.Refill(RefillOf(1_000));
        Sql("DELETE FROM purse_seal");
        Sql("UPDATE purse_balances SET amount = 5000");
        Card.Dispose();
        Card = UnlockedCard(Path.Combine(Dir, "card-b"));
        Ledger = NewLedger();

        Assert.Equal(PurseRefusal.SealBroken, Assert.Throws<PurseException>(() => Ledger.SealIfUnsealed()).Refusal);
        Assert.Null(Card.ReadPurseCounter());
        AssertRefusedAndNothingMoves("altered");
    }
}
