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
public sealed record WalletHistoryRequest(long After = 0) : ControlMessage
{
    public const string WireType = "wallet-history";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        if (After != 0) w.Int("after", After);
    }

    internal static WalletHistoryRequest Read(FieldReader r) => new(r.IntOr("after", 0, 0));
}

/// <summary>
/// <c>wallet-history</c> reply: one page of the purse log as JSON lines (entries after the request's
/// <c>after</c> sequence number), whether the log's hash chain is intact, and with <see cref="More"/>
/// the sequence number to ask after for the next page.
/// </summary>
public sealed record WalletHistoryReply(IReadOnlyList<string> Entries, bool Intact, bool More = false, long Last = 0) : ControlReply
{
    public const string WireType = "wallet-history";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.TextList("entries", Entries.ToList());
        w.Bool("intact", Intact);
        if (More)
        {
            w.Bool("more", true);
            w.Int("last", Last);
        }
    }

    internal static WalletHistoryReply Read(FieldReader r)
    {
        var more = r.Has("more") && r.Bool("more");
        return new(r.TextList("entries", 100_000, 4096), r.Bool("intact"), more, more ? r.Int("last", 0) : 0);
    }
}

/// <summary>A wallet request or reply that carries one COSE_Sign1 money message in <see cref="FieldName"/>.</summary>
public abstract record MoneyCarrier(byte[] Cose) : ControlMessage
{
    protected abstract string FieldName { get; }

    internal override void Write(FieldWriter w) => w.Bytes(FieldName, Cose);

    /// <summary>The field's bytes, checked to have the shape of a COSE_Sign1 message (its content and signature are the purse's to judge).</summary>
    internal static byte[] ReadCose(FieldReader r, string field)
    {
        var bytes = r.Bytes(field, ControlProtocol.MaxMoneyMessageBytes);
        try
        {
            var c = new System.Formats.Cbor.CborReader(bytes, System.Formats.Cbor.CborConformanceMode.Lax);
            if (c.PeekState() == System.Formats.Cbor.CborReaderState.Tag && c.ReadTag() != (System.Formats.Cbor.CborTag)18) throw new FormatException("not the COSE_Sign1 tag");
            if (c.ReadStartArray() != 4) throw new FormatException("not four elements");
            c.ReadByteString();
            if (c.PeekState() != System.Formats.Cbor.CborReaderState.StartMap) throw new FormatException("no unprotected header map");
            c.SkipValue();
            if (c.PeekState() == System.Formats.Cbor.CborReaderState.Null) c.ReadNull(); else c.ReadByteString();
            c.ReadByteString();
            c.ReadEndArray();
            if (c.BytesRemaining != 0) throw new FormatException("trailing bytes");
        }
        catch (Exception e) when (e is System.Formats.Cbor.CborContentException or InvalidOperationException or FormatException or OverflowException)
        {
            throw new ProtocolException($"field '{field}' of '{r.Type}' is not a COSE_Sign1 message", field, e);
        }
        return bytes;
    }
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
