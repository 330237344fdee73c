using System.Security.Cryptography;
using System.Text;
using Daiko.Money;
using System.Data.Common;
using Daiko.Home.Storage;

namespace Daiko.Home.Money;

/// <summary>One line of the tamper-evident payment log.</summary>
public sealed record LedgerEntry(long Sequence, DateTimeOffset At, string Kind, string Reference, long Amount, string Currency, long BalanceAfter, string Hash);

/// <summary>What the home card needs to act on money: its id, whether PIN2 was given, and its signing key.</summary>
public interface IPurseCard
{
    string CardId { get; }

    bool CryptoReady { get; }

    /// <summary>The card's purse key as a COSE signer (money messages only; the private operation runs in the card).</summary>
    IMoneySigner OpenSigningKey();

    /// <summary>The purse key's public half (to verify the purse's seal).</summary>
    ECDsa PurseKey();

    /// <summary>The seal counter the card keeps (null before the first seal).</summary>
    long? ReadSealCounter();

    /// <summary>Moves the card's seal counter forward.</summary>
    void AdvanceSealCounter(long value);
}

/// <summary>
/// The e-purse kept by the home card (F12-F15, seed Figs. 17-20): balances per currency in minor
/// units, and a hash-chained log. Every change of money is in one transaction together with its log
/// entry and its stored answer, so a crash loses or doubles nothing, and a retried request (same id)
/// gets the first answer back. Concurrent changes share one transaction and one durable commit
/// (<see cref="PurseGroupCommit"/>); none is answered before that commit.
/// </summary>
public sealed partial class PurseLedger
{
    private readonly IHomeStore _store;
    private readonly IPurseCard _card;
    private readonly Func<string, PayeeRole, ECDsa?> _partyKeys;
    private readonly TimeProvider _time;
    private readonly TimeSpan _cancellationWindow;
    private readonly object _gate = new();
    private readonly PurseGroupCommit _group;

    // The purse_log edit count seen at the last whole-chain check (null: none yet in this process, or
    // the chain must be checked again); while it holds, each operation checks only the seal and the tail.
    private long? _checkedEdits;

    /// <param name="partyKeys">The verification key of a market or bank by its id and the role it signs in (null: no payee of that name has that role).</param>
    public PurseLedger(string databasePath, IPurseCard card, Func<string, PayeeRole, ECDsa?> partyKeys, TimeProvider? time = null, TimeSpan? cancellationWindow = null)
        : this(HomeStore.Sqlite(databasePath), card, partyKeys, time, cancellationWindow)
    {
    }

    /// <param name="store">SQLite or PostgreSQL.</param>
    public PurseLedger(IHomeStore store, IPurseCard card, Func<string, PayeeRole, ECDsa?> partyKeys, TimeProvider? time = null, TimeSpan? cancellationWindow = null)
    {
        _store = store;
        _card = card;
        _partyKeys = partyKeys;
        _time = time ?? TimeProvider.System;
        _cancellationWindow = cancellationWindow ?? TimeSpan.FromDays(7);
        _group = new PurseGroupCommit(_gate, CommitBatch);
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = store.Schema;
        cmd.ExecuteNonQuery();
    }

    private DbConnection Open() => _store.Open();

    public long Balance(string currency)
    {
        using var c = Open();
        return BalanceOf(c, null, currency);
    }

    /// <summary>
    /// A balance after a credit, refused (that operation alone) when it would pass what the purse holds:
    /// unchecked it would wrap to a negative balance, and the store's check would then fail the whole batch.
    /// </summary>
    private static long Credited(long balance, long amount, string currency) =>
        amount <= long.MaxValue - balance ? balance + amount
            : throw new PurseException(PurseRefusal.Malformed, $"the credit of {amount} {currency} would take the balance past what the purse can hold");

    private static long BalanceOf(DbConnection c, DbTransaction? tx, string currency) =>
        PurseSql.Scalar(c, tx, "SELECT amount FROM purse_balances WHERE currency = @c", ("@c", currency)) is long l ? l : 0;

    /// <summary>F12: pays a market's signed request; returns the card's signed payment.</summary>
    /// <param name="charge">Also run in the payment's transaction with its amount and currency (a device's spend limit); throwing refuses the payment.</param>
    /// <param name="payer">The device that pays, kept with the payment: only it (or the owner) may cancel it.</param>
    public async Task<byte[]> PayAsync(byte[] requestCose, Action<DbConnection, DbTransaction, long, string>? charge = null, string? payer = null)
    {
        var unverified = MoneyCodec.ReadUnverified<PaymentRequest>(requestCose);
        var market = unverified.Market;
        var request = MoneyCodec.Verify<PaymentRequest>(requestCose, KeyOf(market, PayeeRole.Market));
        // Scoped to the market; a payment stored before ids were scoped answers only its own market's same order.
        var id = new MoneyRequestId("pay", market, request.RequestId, MoneyMessage.Hash(request.Payload()))
        {
            LegacyMatches = answer => MoneyCodec.ReadUnverified<Daiko.Money.Payment>(answer) is var p
                && p.Market == market && p.Order == request.Order && p.Amount == request.Amount && p.Currency == request.Currency,
        };
        return await TransactAsync(id, (c, tx) =>
        {
            RequireReady();
            if (request.Expires <= _time.GetUtcNow()) throw new PurseException(PurseRefusal.Expired, "the payment request has expired");
            var amount = request.Amount;
            var currency = request.Currency;
            if (amount <= 0) throw new PurseException(PurseRefusal.Malformed, "a payment amount must be positive");
            var balance = BalanceOf(c, tx, currency);
            if (balance < amount) throw new PurseException(BalanceOf(c, tx, currency) == 0 && !HasCurrency(c, tx, currency) ? PurseRefusal.WrongCurrency : PurseRefusal.InsufficientBalance,
                !HasCurrency(c, tx, currency) ? $"the purse holds no {currency}" : $"the balance of {balance} {currency} does not cover {amount}");
            charge?.Invoke(c, tx, amount, currency);
            var paymentId = Guid.NewGuid().ToString("N");
            var now = _time.GetUtcNow();
            SetBalance(c, tx, currency, balance - amount);
            Log(c, tx, "payment", paymentId, -amount, currency, balance - amount);
            Execute(c, tx, "INSERT INTO purse_payments(payment_id, market, amount, currency, at, state, market_url) VALUES(@p, @m, @a, @c, @t, 'paid', @u)",
                ("@p", paymentId), ("@m", market), ("@a", amount), ("@c", currency), ("@t", now.ToString("O")), ("@u", request.Url));
            if (payer is not null) Execute(c, tx, "INSERT INTO purse_payers(payment_id, device) VALUES(@p, @d)", ("@p", paymentId), ("@d", payer));
            var key = _card.OpenSigningKey();
            var payment = new Daiko.Money.Payment(_card.CardId, paymentId, MoneyMessage.Hash(requestCose), market, request.Order, amount, currency, now);
            return () => payment.Sign(key);
        });
    }

    /// <summary>F13: credits a bank's signed refill exactly once; returns the card's signed acknowledgement.</summary>
    public async Task<byte[]> RefillAsync(byte[] refillCose)
    {
        var unverified = MoneyCodec.ReadUnverified<Daiko.Money.Refill>(refillCose);
        var refill = MoneyCodec.Verify<Daiko.Money.Refill>(refillCose, KeyOf(unverified.Bank, PayeeRole.Bank));
        var id = new MoneyRequestId("refill", refill.Bank, refill.RefillId, MoneyMessage.Hash(refill.Payload()))
        {
            LegacyMatches = answer => MoneyCodec.ReadUnverified<RefillAck>(answer) is var a && a.Amount == refill.Amount && a.Currency == refill.Currency,
        };
        return await TransactAsync(id, (c, tx) =>
        {
            RequireReady();
            if (refill.Card != _card.CardId) throw new PurseException(PurseRefusal.WrongCard, "the refill was issued for another card");
            if (refill.Expires <= _time.GetUtcNow()) throw new PurseException(PurseRefusal.Expired, "the refill has expired");
            var amount = refill.Amount;
            if (amount <= 0) throw new PurseException(PurseRefusal.Malformed, "a refill amount must be positive");
            var currency = refill.Currency;
            var balance = Credited(BalanceOf(c, tx, currency), amount, currency);
            SetBalance(c, tx, currency, balance);
            Log(c, tx, "refill", refill.RefillId, amount, currency, balance);
            var key = _card.OpenSigningKey();
            var ack = new RefillAck(_card.CardId, refill.RefillId, amount, currency, _time.GetUtcNow());
            return () => ack.Sign(key);
        });
    }

    /// <summary>F15: signs a cancellation of a payment made within the window.</summary>
    public async Task<byte[]> CancelAsync(string paymentId)
    {
        using (var c = Open())
        using (var tx = c.BeginTransaction())
        {
            // A retry of a pending cancellation gets its first answer; a payment already re-credited is refused.
            if (Payment(c, tx, paymentId).State == "cancelled")
                throw new PurseException(PurseRefusal.AlreadyCancelled, $"payment {paymentId} was already cancelled and re-credited");
        }
        return await TransactAsync(new MoneyRequestId("cancel", "card", paymentId, paymentId), (c, tx) =>
        {
            RequireReady();
            // The table first (cheap, and an edit of it can only make a payment look cancellable), then the log's word.
            var row = CancellablePayment(Payment(c, tx, paymentId), paymentId);
            var (market, amount, currency, at, state) = CancellablePayment(LoggedPayment(c, tx, row, paymentId), paymentId);
            Execute(c, tx, "UPDATE purse_payments SET state = 'cancelling' WHERE payment_id = @p", ("@p", paymentId));
            var key = _card.OpenSigningKey();
            var cancellation = new Cancellation(_card.CardId, paymentId, market, amount, currency, _time.GetUtcNow());
            return () => cancellation.Sign(key);
        });
    }

    /// <summary>F15: the market's signed confirmation re-credits the payment exactly once.</summary>
    public async Task<long> ApplyConfirmationAsync(byte[] confirmationCose)
    {
        var unverified = MoneyCodec.ReadUnverified<CancellationConfirmation>(confirmationCose);
        var confirmation = MoneyCodec.Verify<CancellationConfirmation>(confirmationCose, KeyOf(unverified.Market, PayeeRole.Market));
        var paymentId = confirmation.PaymentId;
        var hash = MoneyMessage.Hash(confirmation.Payload());
        var answer = await TransactAsync(new MoneyRequestId("confirm", confirmation.Market, hash, hash) { LegacyMatches = null }, (c, tx) =>
        {
            // The table first (cheap, and an edit of it can only make a payment look pending), then the log's word.
            var row = PendingCancellation(Payment(c, tx, paymentId), paymentId);
            var (market, amount, currency, _, _) = PendingCancellation(LoggedPayment(c, tx, row, paymentId), paymentId);
            if (market != confirmation.Market || amount != confirmation.Amount || currency != confirmation.Currency)
                throw new PurseException(PurseRefusal.Malformed, "the confirmation does not match the payment");
            var balance = Credited(BalanceOf(c, tx, currency), amount, currency);
            SetBalance(c, tx, currency, balance);
            Log(c, tx, "cancellation", paymentId, amount, currency, balance);
            Execute(c, tx, "UPDATE purse_payments SET state = 'cancelled' WHERE payment_id = @p", ("@p", paymentId));
            var answer = BitConverter.GetBytes(balance);
            return () => answer;
        });
        return BitConverter.ToInt64(answer);
    }

    // The same operations for callers with no asynchronous context (tests, benchmarks): each blocks its
    // thread until the commit that carried it. The home server's handlers and console use the asynchronous ones.

    /// <summary>F12, blocking: see <see cref="PayAsync"/>.</summary>
    public byte[] Pay(byte[] requestCose, Action<DbConnection, DbTransaction, long, string>? charge = null) => PayAsync(requestCose, charge).GetAwaiter().GetResult();

    /// <summary>F13, blocking: see <see cref="RefillAsync"/>.</summary>
    public byte[] Refill(byte[] refillCose) => RefillAsync(refillCose).GetAwaiter().GetResult();

    /// <summary>F15, blocking: see <see cref="CancelAsync"/>.</summary>
    public byte[] Cancel(string paymentId) => CancelAsync(paymentId).GetAwaiter().GetResult();

    /// <summary>F15, blocking: see <see cref="ApplyConfirmationAsync"/>.</summary>
    public long ApplyConfirmation(byte[] confirmationCose) => ApplyConfirmationAsync(confirmationCose).GetAwaiter().GetResult();

    /// <summary>Whether the purse made payment <paramref name="paymentId"/>, and the device that paid (null: the owner, or a payment from before payers were kept).</summary>
    public (bool Known, string? Payer) PayerOf(string paymentId)
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT p.payment_id, r.device FROM purse_payments p LEFT JOIN purse_payers r ON r.payment_id = p.payment_id WHERE p.payment_id = @p";
        AddParameter(cmd, "@p", paymentId);
        using var r = cmd.ExecuteReader();
        return r.Read() ? (true, r.IsDBNull(1) ? null : r.GetString(1)) : (false, null);
    }

    /// <summary>Where the market of a payment takes cancellations (from its signed request).</summary>
    public string? MarketUrlOf(string paymentId)
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT market_url FROM purse_payments WHERE payment_id = @p";
        AddParameter(cmd, "@p", paymentId);
        return cmd.ExecuteScalar() as string;
    }

    public IReadOnlyList<string> Currencies()
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT currency FROM purse_balances ORDER BY currency";
        using var r = cmd.ExecuteReader();
        var list = new List<string>();
        while (r.Read()) list.Add(r.GetString(0));
        return list;
    }

    /// <summary>When the log's first entry was made, or null for an empty log (one row read, not the whole log).</summary>
    public DateTimeOffset? FirstEntryAt()
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT at FROM purse_log ORDER BY seq LIMIT 1";
        return cmd.ExecuteScalar() is string at ? DateTimeOffset.Parse(at, System.Globalization.CultureInfo.InvariantCulture) : null;
    }

    public IReadOnlyList<LedgerEntry> History()
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT seq, at, kind, ref, amount, currency, balance_after, hash FROM purse_log ORDER BY seq";
        using var r = cmd.ExecuteReader();
        var list = new List<LedgerEntry>();
        while (r.Read())
        {
            list.Add(new LedgerEntry(r.GetInt64(0), DateTimeOffset.Parse(r.GetString(1), System.Globalization.CultureInfo.InvariantCulture), r.GetString(2), r.GetString(3), r.GetInt64(4), r.GetString(5), r.GetInt64(6), r.GetString(7)));
        }
        return list;
    }

    /// <summary>Re-computes the hash chain and checks the balances equal the sum of the log; false if anything was altered or removed.</summary>
    public bool VerifyLog()
    {
        using var c = Open();
        var intact = PurseLog.Read(c, null).LogIntact;
        if (!intact)
        {
            lock (_gate) _checkedEdits = null;
        }
        return intact;
    }

    /// <summary>
    /// Seals a purse that has no seal yet (one from before the seal), once its log verifies; a purse
    /// already sealed is checked instead. Needs the card crypto-ready (the home server calls it after PIN2).
    /// Devices unlocking at once through several nodes race here: the loser's transaction is run again,
    /// and then finds the winner's seal.
    /// </summary>
    public void SealIfUnsealed()
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                SealIfUnsealedOnce();
                return;
            }
            catch (DbException e) when (PurseGroupCommit.LostRace(e) && attempt < PurseGroupCommit.ConflictAttempts)
            {
                PurseGroupCommit.BackOff(attempt);
            }
        }
    }

    private void SealIfUnsealedOnce()
    {
        lock (_gate)
        {
            RequireReady();
            using var c = Open();
            using var writer = _store.LockPurse(c);
            using var tx = c.BeginTransaction(System.Data.IsolationLevel.Serializable);
            _checkedEdits = null;
            var counter = CheckSeal(c, tx);
            if (counter != 0)
            {
                tx.Commit();
                return;
            }
            PurseSeal.Seal(c, tx, _card, 1);
            tx.Commit();
            _card.AdvanceSealCounter(1);
        }
    }

    /// <summary>
    /// The head of the chain signed by the card when the card is ready to sign (a device holds it unlocked), else null:
    /// a report is not held back for it (F14 wants misuse noticed, and a thief locks the card again at once).
    /// </summary>
    public byte[]? SignedHeadIfReady() => _card.CryptoReady ? SignedHead() : null;

    /// <summary>The head of the chain signed by the card: proof of the whole log's state for a report.</summary>
    public byte[] SignedHead()
    {
        var history = History();
        var key = _card.OpenSigningKey();
        return new LogHead(_card.CardId, history.Count, history.Count == 0 ? GenesisHash : history[^1].Hash, _time.GetUtcNow()).Sign(key);
    }

    private const string GenesisHash = PurseLog.GenesisHash;

    private void Log(DbConnection c, DbTransaction tx, string kind, string reference, long amount, string currency, long balanceAfter)
    {
        var (seq, previous) = PurseSql.Row(c, tx, "SELECT seq, hash FROM purse_log ORDER BY seq DESC LIMIT 1", r => (r.GetInt64(0) + 1, r.GetString(1)))
            ?? (1L, GenesisHash);
        var at = _time.GetUtcNow().ToString("O");
        var hash = PurseLog.ChainHash(previous, PurseLog.EntryText(seq, at, kind, reference, amount, currency, balanceAfter));
        Execute(c, tx, "INSERT INTO purse_log(seq, at, kind, ref, amount, currency, balance_after, prev_hash, hash) VALUES(@s, @t, @k, @r, @a, @c, @b, @p, @h)",
            ("@s", seq), ("@t", at), ("@k", kind), ("@r", reference), ("@a", amount), ("@c", currency), ("@b", balanceAfter), ("@p", previous), ("@h", hash));
    }

    private static void SetBalance(DbConnection c, DbTransaction tx, string currency, long amount) =>
        Execute(c, tx, "INSERT INTO purse_balances(currency, amount) VALUES(@c, @a) ON CONFLICT(currency) DO UPDATE SET amount = @a", ("@c", currency), ("@a", amount));

    private static bool HasCurrency(DbConnection c, DbTransaction tx, string currency) =>
        PurseSql.Scalar(c, tx, "SELECT COUNT(*) FROM purse_balances WHERE currency = @c", ("@c", currency)) is long n && n > 0;

    /// <summary><paramref name="payment"/> when its cancellation waits for the market's confirmation (not re-credited yet).</summary>
    private static (string Market, long Amount, string Currency, DateTimeOffset At, string State) PendingCancellation(
        (string Market, long Amount, string Currency, DateTimeOffset At, string State) payment, string paymentId)
    {
        if (payment.State == "cancelled") throw new PurseException(PurseRefusal.AlreadyCancelled, $"payment {paymentId} was already re-credited");
        if (payment.State != "cancelling") throw new PurseException(PurseRefusal.UnknownPayment, $"payment {paymentId} has no cancellation pending");
        return payment;
    }

    /// <summary><paramref name="payment"/> when it may be cancelled now: paid (not cancelled) and within the window.</summary>
    private (string Market, long Amount, string Currency, DateTimeOffset At, string State) CancellablePayment(
        (string Market, long Amount, string Currency, DateTimeOffset At, string State) payment, string paymentId)
    {
        if (payment.State != "paid") throw new PurseException(PurseRefusal.AlreadyCancelled, $"payment {paymentId} was already cancelled");
        if (_time.GetUtcNow() - payment.At > _cancellationWindow)
            throw new PurseException(PurseRefusal.OutsideCancellationWindow, $"payment {paymentId} is older than the {_cancellationWindow.TotalDays:0} day cancellation window");
        return payment;
    }

    /// <summary>
    /// The payment as a cancellation or its confirmation may use it: its amount, currency and time from the hash-chained log
    /// (<see cref="PurseLog.Payment"/>), which must agree with the payments table; a payment the log re-credited already is
    /// "cancelled" whatever the table says.
    /// </summary>
    private static (string Market, long Amount, string Currency, DateTimeOffset At, string State) LoggedPayment(DbConnection c, DbTransaction tx,
        (string Market, long Amount, string Currency, DateTimeOffset At, string State) row, string paymentId)
    {
        var logged = PurseLog.Payment(c, tx, paymentId);
        if (logged.Amount != row.Amount || logged.Currency != row.Currency || (logged.At - row.At).Duration() > TimeSpan.FromSeconds(1))
            throw new PurseException(PurseRefusal.Malformed, $"payment {paymentId} in the payments table does not match the purse's log: the store was altered");
        return (row.Market, logged.Amount, logged.Currency, logged.At, logged.Recredited ? "cancelled" : row.State);
    }

    private static (string Market, long Amount, string Currency, DateTimeOffset At, string State) Payment(DbConnection c, DbTransaction tx, string paymentId)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "SELECT market, amount, currency, at, state FROM purse_payments WHERE payment_id = @p";
        AddParameter(cmd, "@p", paymentId);
        using var r = cmd.ExecuteReader();
        if (!r.Read()) throw new PurseException(PurseRefusal.UnknownPayment, $"no payment {paymentId} was made by this card");
        return (r.GetString(0), r.GetInt64(1), r.GetString(2), DateTimeOffset.Parse(r.GetString(3), System.Globalization.CultureInfo.InvariantCulture), r.GetString(4));
    }

    private void RequireReady()
    {
        if (!_card.CryptoReady) throw new PurseException(PurseRefusal.CardNotReady, "the home card is not ready: give PIN2 first");
    }

    private ECDsa KeyOf(string party, PayeeRole role) =>
        _partyKeys(party, role) ?? throw new PurseException(PurseRefusal.BadSignature, role == PayeeRole.Bank
            ? $"'{party}' is not declared as a bank on this home server: only a bank's refill is credited (the owner declares one with 'daiko home payee add --role bank')"
            : $"'{party}' is not a registered market on this home server (the owner adds one with 'daiko home payee add --role market')");

    private static void Execute(DbConnection c, DbTransaction tx, string sql, params (string, object)[] parameters) => PurseSql.Execute(c, tx, sql, parameters);

    private static void AddParameter(DbCommand command, string name, object value) => PurseSql.Add(command, name, value);
}
