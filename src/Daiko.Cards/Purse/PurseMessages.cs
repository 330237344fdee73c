using System.Formats.Cbor;
using System.Security.Cryptography;
using System.Security.Cryptography.Cose;

namespace Daiko.Cards.Purse;

/// <summary>Why a money message was refused (a reason a caller acts on, never a stack trace).</summary>
public enum PurseRefusal
{
    None,
    BadSignature,
    Malformed,
    Expired,
    InsufficientBalance,
    WrongCurrency,
    OutsideCancellationWindow,
    AlreadyCancelled,
    UnknownPayment,
    CardNotReady,
    WrongCard,
}

public sealed class PurseException(PurseRefusal refusal, string message) : Exception(message)
{
    public PurseRefusal Refusal { get; } = refusal;
}

/// <summary>
/// Every message that moves money: a CBOR map signed as COSE_Sign1 (ES256) by its owner. The kinds
/// (seed Figs. 17-20): payment-request and cancellation-confirmation (market), refill (bank),
/// payment, refill-ack and cancellation (home card).
/// </summary>
public sealed class MoneyMessage
{
    private readonly Dictionary<string, object> _fields;

    private MoneyMessage(string kind, Dictionary<string, object> fields)
    {
        Kind = kind;
        _fields = fields;
    }

    public string Kind { get; }

    public static MoneyMessage Create(string kind) => new(kind, new Dictionary<string, object>(StringComparer.Ordinal));

    public MoneyMessage With(string name, object value)
    {
        _fields[name] = value;
        return this;
    }

    public string Text(string name) => _fields.TryGetValue(name, out var v) && v is string s ? s : throw Missing(name);

    public string TextOrEmpty(string name) => _fields.TryGetValue(name, out var v) && v is string s ? s : "";

    public long Integer(string name) => _fields.TryGetValue(name, out var v) && v is long l ? l : throw Missing(name);

    public byte[] Bytes(string name) => _fields.TryGetValue(name, out var v) && v is byte[] b ? b : throw Missing(name);

    public DateTimeOffset Time(string name) => DateTimeOffset.FromUnixTimeSeconds(Integer(name));

    private PurseException Missing(string name) => new(PurseRefusal.Malformed, $"the {Kind} lacks its '{name}' field");

    public byte[] Payload()
    {
        var w = new CborWriter(CborConformanceMode.Canonical);
        var keys = _fields.Keys.Append("kind").Order(StringComparer.Ordinal).ToList();
        w.WriteStartMap(keys.Count);
        foreach (var key in keys.OrderBy(k => k.Length).ThenBy(k => k, StringComparer.Ordinal))
        {
            w.WriteTextString(key);
            var value = key == "kind" ? Kind : _fields[key];
            switch (value)
            {
                case string s: w.WriteTextString(s); break;
                case long l: w.WriteInt64(l); break;
                case int i: w.WriteInt64(i); break;
                case byte[] b: w.WriteByteString(b); break;
                case DateTimeOffset t: w.WriteInt64(t.ToUnixTimeSeconds()); break;
                default: throw new ArgumentException($"unsupported field type for {key}");
            }
        }
        w.WriteEndMap();
        return w.Encode();
    }

    /// <summary>Signs this message as COSE_Sign1 with <paramref name="key"/> (which may live in a token).</summary>
    public byte[] Sign(ECDsa key) => CoseSign1Message.SignEmbedded(Payload(), new CoseSigner(key, HashAlgorithmName.SHA256));

    /// <summary>Verifies a COSE_Sign1 money message with its owner's key and expected kind; throws PurseException otherwise.</summary>
    public static MoneyMessage Verify(byte[] cose, ECDsa ownerKey, string expectedKind)
    {
        CoseSign1Message message;
        try
        {
            message = CoseMessage.DecodeSign1(cose);
        }
        catch (CryptographicException)
        {
            throw new PurseException(PurseRefusal.Malformed, $"the {expectedKind} is not a valid COSE_Sign1 message");
        }
        bool valid;
        try
        {
            valid = message.Content is not null && message.VerifyEmbedded(ownerKey);
        }
        catch (CryptographicException)
        {
            valid = false;
        }
        if (!valid) throw new PurseException(PurseRefusal.BadSignature, $"the {expectedKind}'s signature does not verify: it was forged or altered");
        var parsed = Parse(message.Content!.Value);
        if (parsed.Kind != expectedKind) throw new PurseException(PurseRefusal.Malformed, $"expected a {expectedKind}, got a {parsed.Kind}");
        return parsed;
    }

    /// <summary>Reads a message without verifying (only to route it; never to act on it).</summary>
    public static MoneyMessage ReadUnverified(byte[] cose) => Parse(CoseMessage.DecodeSign1(cose).Content!.Value);

    private static MoneyMessage Parse(ReadOnlyMemory<byte> payload)
    {
        try
        {
            var r = new CborReader(payload, CborConformanceMode.Canonical);
            var count = r.ReadStartMap() ?? throw new PurseException(PurseRefusal.Malformed, "indefinite map");
            string? kind = null;
            var fields = new Dictionary<string, object>(StringComparer.Ordinal);
            for (var i = 0; i < count; i++)
            {
                var key = r.ReadTextString();
                object value = r.PeekState() switch
                {
                    CborReaderState.TextString => r.ReadTextString(),
                    CborReaderState.ByteString => r.ReadByteString(),
                    CborReaderState.UnsignedInteger or CborReaderState.NegativeInteger => r.ReadInt64(),
                    _ => throw new PurseException(PurseRefusal.Malformed, $"unexpected value for '{key}'"),
                };
                if (key == "kind") kind = (string)value;
                else fields[key] = value;
            }
            r.ReadEndMap();
            if (r.BytesRemaining != 0) throw new PurseException(PurseRefusal.Malformed, "trailing bytes");
            return new MoneyMessage(kind ?? throw new PurseException(PurseRefusal.Malformed, "a money message without a kind"), fields);
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or FormatException or OverflowException or InvalidCastException)
        {
            throw new PurseException(PurseRefusal.Malformed, "the money message's content is malformed");
        }
    }

    public static string Hash(byte[] cose) => Convert.ToHexString(SHA256.HashData(cose)).ToLowerInvariant();
}

/// <summary>The kinds of money messages.</summary>
public static class MoneyKinds
{
    public const string PaymentRequest = "payment-request";
    public const string Payment = "payment";
    public const string Refill = "refill";
    public const string RefillAck = "refill-ack";
    public const string Cancellation = "cancellation";
    public const string CancellationConfirmation = "cancellation-confirmation";
}
