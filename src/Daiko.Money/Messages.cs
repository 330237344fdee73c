namespace Daiko.Money;

using static MoneyField;

/// <summary>A market's signed request to be paid for an order (answered by the home card with a <see cref="Payment"/>).</summary>
public sealed record PaymentRequest(string Market, string Order, string RequestId, long Amount, string Currency, DateTimeOffset Expires, string Url)
    : MoneyMessage<PaymentRequest>, IMoneyKind<PaymentRequest>
{
    public static string WireKind => MoneyKinds.PaymentRequest;

    public static MoneyFields<PaymentRequest> Fields { get; } = new(
        Text<PaymentRequest>("market", m => m.Market), Text<PaymentRequest>("order", m => m.Order), Text<PaymentRequest>("request_id", m => m.RequestId),
        Integer<PaymentRequest>("amount", m => m.Amount), Text<PaymentRequest>("currency", m => m.Currency), Time<PaymentRequest>("expires", m => m.Expires),
        OptionalText<PaymentRequest>("url", m => m.Url));
}

/// <summary>The home card's signed payment of a request.</summary>
public sealed record Payment(string Card, string PaymentId, string RequestHash, string Market, string Order, long Amount, string Currency, DateTimeOffset At)
    : MoneyMessage<Payment>, IMoneyKind<Payment>
{
    public static string WireKind => MoneyKinds.Payment;

    public static MoneyFields<Payment> Fields { get; } = new(
        Text<Payment>("card", m => m.Card), Text<Payment>("payment_id", m => m.PaymentId), Text<Payment>("request_hash", m => m.RequestHash),
        Text<Payment>("market", m => m.Market), Text<Payment>("order", m => m.Order), Integer<Payment>("amount", m => m.Amount),
        Text<Payment>("currency", m => m.Currency), Time<Payment>("at", m => m.At));
}

/// <summary>A bank's signed refill of a card.</summary>
public sealed record Refill(string Bank, string Card, string RefillId, long Amount, string Currency, DateTimeOffset Expires)
    : MoneyMessage<Refill>, IMoneyKind<Refill>
{
    public static string WireKind => MoneyKinds.Refill;

    public static MoneyFields<Refill> Fields { get; } = new(
        Text<Refill>("bank", m => m.Bank), Text<Refill>("card", m => m.Card), Text<Refill>("refill_id", m => m.RefillId),
        Integer<Refill>("amount", m => m.Amount), Text<Refill>("currency", m => m.Currency), Time<Refill>("expires", m => m.Expires));
}

/// <summary>The home card's signed acknowledgement of a refill it credited.</summary>
public sealed record RefillAck(string Card, string RefillId, long Amount, string Currency, DateTimeOffset At)
    : MoneyMessage<RefillAck>, IMoneyKind<RefillAck>
{
    public static string WireKind => MoneyKinds.RefillAck;

    public static MoneyFields<RefillAck> Fields { get; } = new(
        Text<RefillAck>("card", m => m.Card), Text<RefillAck>("refill_id", m => m.RefillId), Integer<RefillAck>("amount", m => m.Amount),
        Text<RefillAck>("currency", m => m.Currency), Time<RefillAck>("at", m => m.At));
}

/// <summary>The home card's signed cancellation of one of its payments.</summary>
public sealed record Cancellation(string Card, string PaymentId, string Market, long Amount, string Currency, DateTimeOffset At)
    : MoneyMessage<Cancellation>, IMoneyKind<Cancellation>
{
    public static string WireKind => MoneyKinds.Cancellation;

    public static MoneyFields<Cancellation> Fields { get; } = new(
        Text<Cancellation>("card", m => m.Card), Text<Cancellation>("payment_id", m => m.PaymentId), Text<Cancellation>("market", m => m.Market),
        Integer<Cancellation>("amount", m => m.Amount), Text<Cancellation>("currency", m => m.Currency), Time<Cancellation>("at", m => m.At));
}

/// <summary>A market's signed confirmation of a cancellation (the card then re-credits once).</summary>
public sealed record CancellationConfirmation(string Market, string PaymentId, long Amount, string Currency, DateTimeOffset At)
    : MoneyMessage<CancellationConfirmation>, IMoneyKind<CancellationConfirmation>
{
    public static string WireKind => MoneyKinds.CancellationConfirmation;

    public static MoneyFields<CancellationConfirmation> Fields { get; } = new(
        Text<CancellationConfirmation>("market", m => m.Market), Text<CancellationConfirmation>("payment_id", m => m.PaymentId),
        Integer<CancellationConfirmation>("amount", m => m.Amount), Text<CancellationConfirmation>("currency", m => m.Currency),
        Time<CancellationConfirmation>("at", m => m.At));
}

/// <summary>The home card's signed head of its payment log (sent with each report).</summary>
public sealed record LogHead(string Card, long Entries, string Head, DateTimeOffset At) : MoneyMessage<LogHead>, IMoneyKind<LogHead>
{
    public static string WireKind => MoneyKinds.LogHead;

    public static MoneyFields<LogHead> Fields { get; } = new(
        Text<LogHead>("card", m => m.Card), Integer<LogHead>("entries", m => m.Entries), Text<LogHead>("head", m => m.Head), Time<LogHead>("at", m => m.At));
}

/// <summary>
/// The home card's seal over the purse as stored: its counter (the token holds the other copy), the
/// log's head and entry count, and the balances as one canonical text ("EUR=5;JPY=1000").
/// </summary>
public sealed record BalanceSeal(string Card, long Counter, string Head, long Entries, string Balances) : MoneyMessage<BalanceSeal>, IMoneyKind<BalanceSeal>
{
    public static string WireKind => MoneyKinds.PurseSeal;

    public static MoneyFields<BalanceSeal> Fields { get; } = new(
        Text<BalanceSeal>("card", m => m.Card), Integer<BalanceSeal>("counter", m => m.Counter), Text<BalanceSeal>("head", m => m.Head),
        Integer<BalanceSeal>("entries", m => m.Entries), Text<BalanceSeal>("balances", m => m.Balances));
}
