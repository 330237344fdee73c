using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Money;
using Daiko.Home.Money;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Server;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Money;

/// <summary>The e-purse on SQLite (the embedded default).</summary>
[Collection("home card")]
public sealed class SqlitePurseLedgerTests() : PurseLedgerContract(StoreKind.Sqlite)
{
}

/// <summary>The same contract on a real PostgreSQL server (hosted deployments, F18).</summary>
[Collection("home card")]
public sealed class PostgresPurseLedgerTests() : PurseLedgerContract(StoreKind.Postgres)
{
    protected override void Tamper(string sql)
    {
        using var c = new Npgsql.NpgsqlConnection(PostgresConnectionString);
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }
}

/// <summary>
/// One contract for every purse store: the e-purse with the real home card (SoftHSM2) signing every
/// card message in its token.
/// </summary>
public abstract class PurseLedgerContract : PurseContract
{
    /// <summary>Runs <paramref name="sql"/> on the purse's store behind the ledger's back, as someone who can write it would.</summary>
    protected virtual void Tamper(string sql)
    {
        using var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(Dir, "home.db")};Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    private readonly ManualTime _time = new();
    private readonly PurseLedger _ledger;

    private sealed class ManualTime : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UtcNow;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    protected PurseLedgerContract(StoreKind kind)
        : base(kind, "daiko-purse")
    {
        _ledger = NewLedger(_time);
    }

    private byte[] RefillOf(long amount, string id = "r1", string currency = "JPY", string? card = null, TimeSpan? validFor = null) =>
        new Refill("bank.test", card ?? Card.CardId, id, amount, currency, _time.Now + (validFor ?? TimeSpan.FromMinutes(5))).Sign(Bank);

    private byte[] RequestOf(long amount, string id = "q1", string currency = "JPY", TimeSpan? validFor = null) =>
        new PaymentRequest("market.test", "order-" + id, id, amount, currency, _time.Now + (validFor ?? TimeSpan.FromMinutes(5)), "").Sign(Market);

    private byte[] ConfirmationOf(Payment payment) =>
        new CancellationConfirmation("market.test", payment.PaymentId, payment.Amount, payment.Currency, _time.Now).Sign(Market);

    private T VerifyCard<T>(byte[] cose) where T : MoneyMessage, IMoneyKind<T>
    {
        using var key = Card.PursePublicKey();
        return MoneyCodec.Verify<T>(cose, key);
    }

    [Fact]
    public void Refill_Pay_Cancel_FullCycle_WithCardSignaturesAndAConsistentLog()
    {
        var ack = VerifyCard<RefillAck>(_ledger.Refill(RefillOf(10_000)));
        Assert.Equal(10_000, ack.Amount);

        var payment = VerifyCard<Payment>(_ledger.Pay(RequestOf(2_500)));
        Assert.Equal(7_500, _ledger.Balance("JPY"));
        Assert.Equal(2_500, payment.Amount);

        var cancellation = VerifyCard<Cancellation>(_ledger.Cancel(payment.PaymentId));
        Assert.Equal(payment.PaymentId, cancellation.PaymentId);
        Assert.Equal(10_000, _ledger.ApplyConfirmation(ConfirmationOf(payment)));

        Assert.Equal(["refill", "payment", "cancellation"], _ledger.History().Select(e => e.Kind));
        Assert.True(_ledger.VerifyLog());
        VerifyCard<LogHead>(_ledger.SignedHead());
    }

    [Fact]
    public void ReplayedRefill_IsCreditedOnce_AndReturnsTheFirstAnswer()
    {
        var refill = RefillOf(1_000);
        var first = _ledger.Refill(refill);
        var second = _ledger.Refill(refill);
        Assert.Equal(first, second);
        Assert.Equal(1_000, _ledger.Balance("JPY"));
    }

    [Fact]
    public void RetriedPayment_ReturnsTheSamePayment_AndDebitsOnce()
    {
        _ledger.Refill(RefillOf(1_000));
        var request = RequestOf(300);
        Assert.Equal(_ledger.Pay(request), _ledger.Pay(request));
        Assert.Equal(700, _ledger.Balance("JPY"));
    }

    [Fact]
    public void Refuses_PaymentAboveBalance_WrongCurrency_AndExpiredRequests()
    {
        _ledger.Refill(RefillOf(100));
        Assert.Equal(PurseRefusal.InsufficientBalance, Assert.Throws<PurseException>(() => _ledger.Pay(RequestOf(101))).Refusal);
        Assert.Equal(PurseRefusal.WrongCurrency, Assert.Throws<PurseException>(() => _ledger.Pay(RequestOf(10, "q2", "EUR"))).Refusal);
        Assert.Equal(PurseRefusal.Expired, Assert.Throws<PurseException>(() => _ledger.Pay(RequestOf(10, "q3", validFor: TimeSpan.FromSeconds(-1)))).Refusal);
        Assert.Equal(PurseRefusal.Expired, Assert.Throws<PurseException>(() => _ledger.Refill(RefillOf(10, "r9", validFor: TimeSpan.FromSeconds(-1)))).Refusal);
        Assert.Equal(100, _ledger.Balance("JPY"));
        Assert.True(_ledger.VerifyLog());
    }

    [Fact]
    public void Refuses_ForgedOrAlteredMessagesOfEveryKind()
    {
        using var forger = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var forgedRefill = new Refill("bank.test", Card.CardId, "f1", 1_000_000L, "JPY", _time.Now.AddMinutes(5)).Sign(forger);
        Assert.Equal(PurseRefusal.BadSignature, Assert.Throws<PurseException>(() => _ledger.Refill(forgedRefill)).Refusal);

        var altered = RequestOf(10);
        altered[^70] ^= 0x01;
        Assert.True(Assert.Throws<PurseException>(() => _ledger.Pay(altered)).Refusal is PurseRefusal.BadSignature or PurseRefusal.Malformed);

        _ledger.Refill(RefillOf(100));
        var payment = VerifyCard<Payment>(_ledger.Pay(RequestOf(50)));
        _ledger.Cancel(payment.PaymentId);
        var forgedConfirmation = new CancellationConfirmation("market.test", payment.PaymentId, 50L, "JPY", _time.Now).Sign(forger);
        Assert.Equal(PurseRefusal.BadSignature, Assert.Throws<PurseException>(() => _ledger.ApplyConfirmation(forgedConfirmation)).Refusal);
        Assert.Equal(50, _ledger.Balance("JPY"));

        using var wrongKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.Throws<PurseException>(() => MoneyCodec.Verify<LogHead>(_ledger.SignedHead(), wrongKey));
    }

    [Fact]
    public void Cancellation_AfterTheWindow_OrTwice_IsRefused()
    {
        _ledger.Refill(RefillOf(1_000));
        var late = VerifyCard<Payment>(_ledger.Pay(RequestOf(100, "late")));
        var twice = VerifyCard<Payment>(_ledger.Pay(RequestOf(100, "twice")));
        _ledger.Cancel(twice.PaymentId);
        _ledger.ApplyConfirmation(ConfirmationOf(twice));
        _time.Now += TimeSpan.FromSeconds(1);
        Assert.Equal(PurseRefusal.AlreadyCancelled, Assert.Throws<PurseException>(() => _ledger.ApplyConfirmation(ConfirmationOf(twice))).Refusal);
        Assert.Equal(PurseRefusal.AlreadyCancelled, Assert.Throws<PurseException>(() => _ledger.Cancel(twice.PaymentId)).Refusal);

        _time.Now += TimeSpan.FromDays(7) + TimeSpan.FromMinutes(1);
        var e = Assert.Throws<PurseException>(() => _ledger.Cancel(late.PaymentId));
        Assert.Equal(PurseRefusal.OutsideCancellationWindow, e.Refusal);
        Assert.Contains("7 day", e.Message, StringComparison.Ordinal);
        Assert.Equal(900, _ledger.Balance("JPY"));
    }

    [Fact]
    public void CardNotReady_MovesNoMoney()
    {
        _ledger.Refill(RefillOf(1_000));
        Card.Done();
        Assert.Equal(PurseRefusal.CardNotReady, Assert.Throws<PurseException>(() => _ledger.Pay(RequestOf(10))).Refusal);
        Assert.Equal(1_000, _ledger.Balance("JPY"));
    }

    [Fact]
    public void TamperingWithTheStore_IsDetectedByTheLog()
    {
        _ledger.Refill(RefillOf(1_000));
        _ledger.Pay(RequestOf(100));
        Assert.True(_ledger.VerifyLog());
        Tamper("UPDATE purse_balances SET amount = 5000");
        Assert.False(_ledger.VerifyLog());
    }

    [Fact]
    public void APaymentRaisedInThePaymentsTable_IsRefusedACancellation_AndNothingIsReCredited()
    {
        _ledger.Refill(RefillOf(1_000));
        var payment = VerifyCard<Payment>(_ledger.Pay(RequestOf(100)));

        Tamper($"UPDATE purse_payments SET amount = 900 WHERE payment_id = '{payment.PaymentId}'");

        var refused = Assert.Throws<PurseException>(() => _ledger.Cancel(payment.PaymentId));
        Assert.Equal(PurseRefusal.Malformed, refused.Refusal);
        Assert.Contains("does not match the purse's log", refused.Message, StringComparison.Ordinal);
        Assert.Equal(900, _ledger.Balance("JPY"));
    }

    [Fact]
    public void APaymentMovedLaterInThePaymentsTable_StaysOutsideItsWindow()
    {
        _ledger.Refill(RefillOf(1_000));
        var payment = VerifyCard<Payment>(_ledger.Pay(RequestOf(100)));
        _time.Now += TimeSpan.FromDays(8);

        Tamper($"UPDATE purse_payments SET at = '{_time.Now:O}' WHERE payment_id = '{payment.PaymentId}'");

        Assert.Equal(PurseRefusal.Malformed, Assert.Throws<PurseException>(() => _ledger.Cancel(payment.PaymentId)).Refusal);
        Assert.Equal(900, _ledger.Balance("JPY"));
    }

    [Fact]
    public void AReCreditedPayment_PutBackToCancellingInTheTable_WithItsStoredAnswerDeleted_IsNotReCreditedAgain()
    {
        _ledger.Refill(RefillOf(1_000));
        var payment = VerifyCard<Payment>(_ledger.Pay(RequestOf(100)));
        _ledger.Cancel(payment.PaymentId);
        var confirmation = ConfirmationOf(payment);
        Assert.Equal(1_000, _ledger.ApplyConfirmation(confirmation));

        Tamper($"UPDATE purse_payments SET state = 'cancelling' WHERE payment_id = '{payment.PaymentId}'");
        Tamper("DELETE FROM purse_requests WHERE kind = 'confirm'");

        Assert.Equal(PurseRefusal.AlreadyCancelled, Assert.Throws<PurseException>(() => _ledger.ApplyConfirmation(confirmation)).Refusal);
        Assert.Equal(1_000, _ledger.Balance("JPY"));
    }

    [Fact]
    public void AnEditedPaymentEntryInTheLog_IsRefusedACancellation()
    {
        _ledger.Refill(RefillOf(1_000));
        var payment = VerifyCard<Payment>(_ledger.Pay(RequestOf(100)));
        _ledger.Pay(RequestOf(50, "q2"));

        // The table and the log's entry raised together, the entry's own hash left (it cannot be made again without the
        // chain), and the store's count of log edits put back, so that the next operation does not check the whole chain.
        Tamper($"UPDATE purse_payments SET amount = 900 WHERE payment_id = '{payment.PaymentId}'");
        Tamper($"UPDATE purse_log SET amount = -900 WHERE kind = 'payment' AND ref = '{payment.PaymentId}'");
        Tamper("UPDATE purse_log_edits SET edits = edits - 1");

        var refused = Assert.Throws<PurseException>(() => _ledger.Cancel(payment.PaymentId));
        Assert.Contains("the store was altered", refused.Message, StringComparison.Ordinal);
        Assert.Equal(850, _ledger.Balance("JPY"));
    }

    [Fact]
    public void Cancellation_At6Days23Hours_IsAccepted_AndJustPast7Days_IsRefused()
    {
        _ledger.Refill(RefillOf(1_000));
        var inTime = VerifyCard<Payment>(_ledger.Pay(RequestOf(100, "in-time")));
        var late = VerifyCard<Payment>(_ledger.Pay(RequestOf(200, "late")));

        _time.Now += TimeSpan.FromDays(6) + TimeSpan.FromHours(23);
        VerifyCard<Cancellation>(_ledger.Cancel(inTime.PaymentId));
        Assert.Equal(800, _ledger.ApplyConfirmation(ConfirmationOf(inTime)));

        _time.Now += TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1);
        Assert.Equal(PurseRefusal.OutsideCancellationWindow, Assert.Throws<PurseException>(() => _ledger.Cancel(late.PaymentId)).Refusal);
        Assert.Equal(800, _ledger.Balance("JPY"));
        Assert.True(_ledger.VerifyLog());
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-1L)]
    [InlineData(long.MinValue)]
    public void ZeroOrNegativeAmounts_AreRefused_AndMoveNoMoney(long amount)
    {
        _ledger.Refill(RefillOf(1_000));
        Assert.Equal(PurseRefusal.Malformed, Assert.Throws<PurseException>(() => _ledger.Pay(RequestOf(amount, "q-bad"))).Refusal);
        Assert.Equal(PurseRefusal.Malformed, Assert.Throws<PurseException>(() => _ledger.Refill(RefillOf(amount, "r-bad"))).Refusal);
        Assert.Equal(1_000, _ledger.Balance("JPY"));
        Assert.Single(_ledger.History());
        Assert.True(_ledger.VerifyLog());
    }

    [Theory]
    [InlineData("JPY\0")]
    [InlineData("JPY\nlog intact: yes")]
    public async Task AControlCharacterInASignedField_IsRefusedAlone_WhilePaymentsSharingItsCommitGoThrough(string currency)
    {
        _ledger.Refill(RefillOf(10_000));

        var good = Enumerable.Range(0, 10).Select(i => _ledger.PayAsync(RequestOf(100, $"q{i}"))).ToList();
        var bad = _ledger.PayAsync(RequestOf(100, "q-bad", currency));
        var refill = _ledger.RefillAsync(RefillOf(100, "r-bad", currency));

        Assert.Equal(PurseRefusal.Malformed, (await Assert.ThrowsAsync<PurseException>(() => bad)).Refusal);
        Assert.Contains("'currency' field holds a control character", (await Assert.ThrowsAsync<PurseException>(() => refill)).Message, StringComparison.Ordinal);
        await Task.WhenAll(good);
        Assert.Equal(9_000, _ledger.Balance("JPY"));
        Assert.Equal(["JPY"], _ledger.Currencies());
        Assert.True(_ledger.VerifyLog());
    }

    [Theory]
    [InlineData("JP=", "r-eq", "is not a currency code")]
    [InlineData("jpy", "r-lower", "is not a currency code")]
    [InlineData("JPYX", "r-long", "is not a currency code")]
    [InlineData("JPY", "r\u2028balance JPY: 999999", "invisible formatting character (U+2028)")]
    [InlineData("JPY", "r\u202Eevil", "invisible formatting character (U+202E)")]
    public void ABanksCurrencyOrIdThatWouldReadAsAnotherRecord_IsRefused_AndMovesNoMoney(string currency, string id, string why)
    {
        _ledger.Refill(RefillOf(1_000));

        var e = Assert.Throws<PurseException>(() => _ledger.Refill(RefillOf(500, id, currency)));

        Assert.Equal(PurseRefusal.Malformed, e.Refusal);
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
        Assert.Equal(1_000, _ledger.Balance("JPY"));
        Assert.Equal(["JPY"], _ledger.Currencies());
        Assert.Single(_ledger.History());
    }

    [Fact]
    public void ARefillThatWouldOverflowTheBalance_IsRefused_AndTheBalanceStays()
    {
        _ledger.Refill(RefillOf(1_000));

        var e = Assert.Throws<PurseException>(() => _ledger.Refill(RefillOf(long.MaxValue, "r-huge")));

        Assert.Equal(PurseRefusal.Malformed, e.Refusal);
        Assert.Contains("past what the purse can hold", e.Message, StringComparison.Ordinal);
        Assert.Equal(1_000, _ledger.Balance("JPY"));
        Assert.True(_ledger.VerifyLog());
    }

    [Fact]
    public void ARefillForAnotherCard_IsRefused_AndCreditsNothing()
    {
        var e = Assert.Throws<PurseException>(() => _ledger.Refill(RefillOf(5_000, "r-other", card: new string('0', Card.CardId.Length))));
        Assert.Equal(PurseRefusal.WrongCard, e.Refusal);
        Assert.Equal(0, _ledger.Balance("JPY"));
        Assert.Empty(_ledger.History());
    }

    [Fact]
    public void AHistoryAboveOneMebibyte_ReadsBackInPages_EachFrameUnderTheLimit()
    {
        const int refills = 300;
        // Eight at a time: they share the purse's commits (the history is the same whatever their order).
        Parallel.For(0, refills, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => _ledger.Refill(RefillOf(1, $"r{i:D4}-" + new string('x', 3_600))));

        var seen = new List<string>();
        var after = 0L;
        var pages = 0;
        var total = 0L;
        while (true)
        {
            var page = Daiko.Home.Handlers.WalletHandler.HistoryPage(_ledger, after);
            var frame = Daiko.Protocol.Wire.ControlFrame.Encode(2 * pages + 1, page);
            Assert.True(frame.Length <= Daiko.Protocol.ControlProtocol.MaxFrameBytes, $"page {pages} is a frame of {frame.Length} bytes");
            var read = Assert.IsType<Daiko.Protocol.Messages.WalletHistoryReply>(Daiko.Protocol.Wire.ControlFrame.Decode(frame.AsMemory(4)).Message);
            Assert.True(read.Intact);
            seen.AddRange(read.Entries);
            total += frame.Length;
            pages++;
            if (!read.More) break;
            Assert.True(read.Last > after, "a page did not move on");
            after = read.Last;
            Assert.True(pages < 50, "paging did not end");
        }

        Assert.True(total > 1 << 20, $"the history was only {total} bytes");
        Assert.True(pages > 1, "the whole history came back in one reply");
        Assert.Equal(refills, seen.Count);
        Assert.Equal(refills, seen.Distinct().Count());
    }
}
