namespace Daiko.Money;

/// <summary>A market's signed request to be paid for an order (answered by the home card with a <see cref="Payment"/>).</summary>
public sealed record PaymentRequest(string Market, string Order, string RequestId, long Amount, string Currency, DateTimeOffset Expires, string Url)
    : MoneyMessage, IMoneyKind<PaymentRequest>
{
    public static string WireKind => MoneyKinds.PaymentRequest;

    public override string Kind => WireKind;

    internal override void Write(MoneyWriter w)
    {
        w.Text("market", Market);
        w.Text("order", Order);
        w.Text("request_id", RequestId);
        w.Integer("amount", Amount);
        w.Text("currency", Currency);
        w.Time("expires", Expires);
        w.Text("url", Url);
    }

    public static PaymentRequest Read(MoneyReader r) =>
        new(r.Text("market"), r.Text("order"), r.Text("request_id"), r.Integer("amount"), r.Text("currency"), r.Time("expires"), r.TextOrEmpty("url"));
}

/// <summary>The home card's signed payment of a request.</summary>
public sealed record Payment(string Card, string PaymentId, string RequestHash, string Market, string Order, long Amount, string Currency, DateTimeOffset At)
    : MoneyMessage, IMoneyKind<Payment>
{
    public static string WireKind => MoneyKinds.Payment;

    public override string Kind => WireKind;

    internal override void Write(MoneyWriter w)
    {
        w.Text("card", Card);
        w.Text("payment_id", PaymentId);
        w.Text("request_hash", RequestHash);
        w.Text("market", Market);
        w.Text("order", Order);
        w.Integer("amount", Amount);
        w.Text("currency", Currency);
        w.Time("at", At);
    }

    public static Payment Read(MoneyReader r) =>
        new(r.Text("card"), r.Text("payment_id"), r.Text("request_hash"), r.Text("market"), r.Text("order"), r.Integer("amount"), r.Text("currency"), r.Time("at"));
}

/// <summary>A bank's signed refill of a card.</summary>
public sealed record Refill(string Bank, string Card, string RefillId, long Amount, string Currency, DateTimeOffset Expires)
    : MoneyMessage, IMoneyKind<Refill>
{
    public static string WireKind => MoneyKinds.Refill;

    public override string Kind => WireKind;

    internal override void Write(MoneyWriter w)
    {
        w.Text("bank", Bank);
        w.Text("card", Card);
        w.Text("refill_id", RefillId);
        w.Integer("amount", Amount);
        w.Text("currency", Currency);
        w.Time("expires", Expires);
    }

    public static Refill Read(MoneyReader r) =>
        new(r.Text("bank"), r.Text("card"), r.Text("refill_id"), r.Integer("amount"), r.Text("currency"), r.Time("expires"));
}

/// <summary>The home card's signed acknowledgement of a refill it credited.</summary>
public sealed record RefillAck(string Card, string RefillId, long Amount, string Currency, DateTimeOffset At)
    : MoneyMessage, IMoneyKind<RefillAck>
{
    public static string WireKind => MoneyKinds.RefillAck;

    public override string Kind => WireKind;

    internal override void Write(MoneyWriter w)
    {
        w.Text("card", Card);
        w.Text("refill_id", RefillId);
        w.Integer("amount", Amount);
        w.Text("currency", Currency);
        w.Time("at", At);
    }

    public static RefillAck Read(MoneyReader r) => new(r.Text("card"), r.Text("refill_id"), r.Integer("amount"), r.Text("currency"), r.Time("at"));
}

/// <summary>The home card's signed cancellation of one of its payments.</summary>
public sealed record Cancellation(string Card, string PaymentId, string Market, long Amount, string Currency, DateTimeOffset At)
    : MoneyMessage, IMoneyKind<Cancellation>
{
    public static string WireKind => MoneyKinds.Cancellation;

    public override string Kind => WireKind;

    internal override void Write(MoneyWriter w)
    {
        w.Text("card", Card);
        w.Text("payment_id", PaymentId);
        w.Text("market", Market);
        w.Integer("amount", Amount);
        w.Text("currency", Currency);
        w.Time("at", At);
    }

    public static Cancellation Read(MoneyReader r) =>
        new(r.Text("card"), r.Text("payment_id"), r.Text("market"), r.Integer("amount"), r.Text("currency"), r.Time("at"));
}

/// <summary>A market's signed confirmation of a cancellation (the card then re-credits once).</summary>
public sealed record CancellationConfirmation(string Market, string PaymentId, long Amount, string Currency, DateTimeOffset At)
    : MoneyMessage, IMoneyKind<CancellationConfirmation>
{
    public static string WireKind => MoneyKinds.CancellationConfirmation;

    public override string Kind => WireKind;

    internal override void Write(MoneyWriter w)
    {
        w.Text("market", Market);
        w.Text("payment_id", PaymentId);
        w.Integer("amount", Amount);
        w.Text("currency", Currency);
        w.Time("at", At);
    }

    public static CancellationConfirmation Read(MoneyReader r) =>
        new(r.Text("market"), r.Text("payment_id"), r.Integer("amount"), r.Text("currency"), r.Time("at"));
}

/// <summary>The home card's signed head of its payment log (sent with each report).</summary>
public sealed record LogHead(string Card, long Entries, string Head, DateTimeOffset At) : MoneyMessage, IMoneyKind<LogHead>
{
    public static string WireKind => MoneyKinds.LogHead;

    public override string Kind => WireKind;

    internal override void Write(MoneyWriter w)
    {
        w.Text("card", Card);
        w.Integer("entries", Entries);
        w.Text("head", Head);
        w.Time("at", At);
    }

    public static LogHead Read(MoneyReader r) => new(r.Text("card"), r.Integer("entries"), r.Text("head"), r.Time("at"));
}

/// <summary>
/// The home card's seal over the purse as stored: its counter (the token holds the other copy), the
/// log's head and entry count, and the balances as one canonical text ("EUR=5;JPY=1000").
/// </summary>
public sealed record BalanceSeal(string Card, long Counter, string Head, long Entries, string Balances) : MoneyMessage, IMoneyKind<BalanceSeal>
{
    public static string WireKind => MoneyKinds.PurseSeal;

    public override string Kind => WireKind;

    internal override void Write(MoneyWriter w)
    {
        w.Text("card", Card);
        w.Integer("counter", Counter);
        w.Text("head", Head);
        w.Integer("entries", Entries);
        w.Text("balances", Balances);
    }

    public static BalanceSeal Read(MoneyReader r) => new(r.Text("card"), r.Integer("counter"), r.Text("head"), r.Integer("entries"), r.Text("balances"));
}
