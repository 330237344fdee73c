using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Messages;

/// <summary>An amount in minor units of a currency.</summary>
public sealed record CurrencyAmount(string Currency, long Amount);

/// <summary><c>wallet-balance</c> request.</summary>
public sealed record WalletBalanceRequest : ControlMessage
{
    public const string WireType = "wallet-balance";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) { }

    internal static WalletBalanceRequest Read(FieldReader r) => new();
}

/// <summary><c>wallet-balance</c> reply: the card and its balance per currency.</summary>
public sealed record WalletBalanceReply(string CardId, IReadOnlyList<CurrencyAmount> Balances) : ControlReply
{
    public const string WireType = "wallet-balance";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Text("card_id", CardId);
        w.List("balances", Balances, static (c, b) =>
        {
            c.WriteStartArray(2);
            c.WriteTextString(b.Currency);
            c.WriteInt64(b.Amount);
            c.WriteEndArray();
        });
    }

    internal static WalletBalanceReply Read(FieldReader r) => new(r.Text("card_id", ControlProtocol.MaxNameLength),
        r.List("balances", 1000, "[currency, amount] pairs", c =>
        {
            FieldReader.ExpectArray(c, 2);
            var balance = new CurrencyAmount(FieldReader.ReadText(c, 16), c.ReadInt64());
            c.ReadEndArray();
            return balance;
        }));
}

/// <summary><c>wallet-history</c> request.</summary>
public sealed record WalletHistoryRequest : ControlMessage
{
    public const string WireType = "wallet-history";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) { }

    internal static WalletHistoryRequest Read(FieldReader r) => new();
}

/// <summary><c>wallet-history</c> reply: the purse log as JSON lines and whether its hash chain is intact.</summary>
public sealed record WalletHistoryReply(IReadOnlyList<string> Entries, bool Intact) : ControlReply
{
    public const string WireType = "wallet-history";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.TextList("entries", Entries.ToList());
        w.Bool("intact", Intact);
    }

    internal static WalletHistoryReply Read(FieldReader r) => new(r.TextList("entries", 100_000, 4096), r.Bool("intact"));
}

/// <summary>A wallet request or reply that carries one COSE_Sign1 money message in <see cref="FieldName"/>.</summary>
public abstract record MoneyCarrier(byte[] Cose) : ControlMessage
{
    protected abstract string FieldName { get; }

    internal override void Write(FieldWriter w) => w.Bytes(FieldName, Cose);

    internal static byte[] ReadCose(FieldReader r, string field) => r.Bytes(field, ControlProtocol.MaxMoneyMessageBytes);
}

/// <summary><c>wallet-pay</c>: the market's signed payment request.</summary>
public sealed record WalletPayRequest(byte[] Request) : MoneyCarrier(Request)
{
    public const string WireType = "wallet-pay";

    public override string Type => WireType;

    protected override string FieldName => "request";

    internal static WalletPayRequest Read(FieldReader r) => new(ReadCose(r, "request"));
}

/// <summary><c>wallet-payment</c>: the card's signed payment and its id (so the terminal need not read money messages).</summary>
public sealed record WalletPaymentReply(byte[] Payment, string PaymentId) : ControlReply
{
    public const string WireType = "wallet-payment";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Bytes("payment", Payment);
        w.Text("payment_id", PaymentId);
    }

    internal static WalletPaymentReply Read(FieldReader r) =>
        new(r.Bytes("payment", ControlProtocol.MaxMoneyMessageBytes), r.Text("payment_id", ControlProtocol.MaxNameLength, allowEmpty: false));
}

/// <summary><c>wallet-refill</c>: the bank's signed refill.</summary>
public sealed record WalletRefillRequest(byte[] Refill) : MoneyCarrier(Refill)
{
    public const string WireType = "wallet-refill";

    public override string Type => WireType;

    protected override string FieldName => "refill";

    internal static WalletRefillRequest Read(FieldReader r) => new(ReadCose(r, "refill"));
}

/// <summary><c>wallet-refill-ack</c>: the card's signed acknowledgement of a refill.</summary>
public sealed record WalletRefillAckReply(byte[] Ack) : MoneyCarrier(Ack)
{
    public const string WireType = "wallet-refill-ack";

    public override string Type => WireType;

    public override bool IsReply => true;

    protected override string FieldName => "ack";

    internal static WalletRefillAckReply Read(FieldReader r) => new(ReadCose(r, "ack"));
}

/// <summary><c>wallet-confirm</c>: the market's signed cancellation confirmation.</summary>
public sealed record WalletConfirmRequest(byte[] Confirmation) : MoneyCarrier(Confirmation)
{
    public const string WireType = "wallet-confirm";

    public override string Type => WireType;

    protected override string FieldName => "confirmation";

    internal static WalletConfirmRequest Read(FieldReader r) => new(ReadCose(r, "confirmation"));
}

/// <summary><c>wallet-cancel</c>: cancel a payment (the card signs a cancellation).</summary>
public sealed record WalletCancelRequest(string PaymentId) : ControlMessage
{
    public const string WireType = "wallet-cancel";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Text("payment_id", PaymentId);

    internal static WalletCancelRequest Read(FieldReader r) => new(r.Text("payment_id", ControlProtocol.MaxNameLength, allowEmpty: false));
}

/// <summary><c>wallet-cancellation</c>: the card's signed cancellation and where the market takes it.</summary>
public sealed record WalletCancellationReply(byte[] Cancellation, string? MarketUrl) : ControlReply
{
    public const string WireType = "wallet-cancellation";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Bytes("cancellation", Cancellation);
        w.TextOrNull("market_url", MarketUrl);
    }

    internal static WalletCancellationReply Read(FieldReader r) =>
        new(r.Bytes("cancellation", ControlProtocol.MaxMoneyMessageBytes), r.TextOrNull("market_url", 2048));
}

/// <summary><c>wallet-credited</c>: the balance after a confirmed cancellation.</summary>
public sealed record WalletCreditedReply(long Balance) : ControlReply
{
    public const string WireType = "wallet-credited";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Int("balance", Balance);

    internal static WalletCreditedReply Read(FieldReader r) => new(r.Int("balance"));
}

/// <summary><c>wallet-mail</c>: mail the payment report now.</summary>
public sealed record WalletMailRequest : ControlMessage
{
    public const string WireType = "wallet-mail";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) { }

    internal static WalletMailRequest Read(FieldReader r) => new();
}

/// <summary><c>wallet-mailed</c>: reports sent now and still pending.</summary>
public sealed record WalletMailedReply(long Sent, long Pending) : ControlReply
{
    public const string WireType = "wallet-mailed";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("sent", Sent);
        w.Int("pending", Pending);
    }

    internal static WalletMailedReply Read(FieldReader r) => new(r.Int("sent", 0), r.Int("pending", 0));
}
