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

    /// <summary>The stored balances or log do not match the home card's seal (edited, truncated, reordered or rolled back).</summary>
    SealBroken,
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

    /// <summary>Signs this message as COSE_Sign1 (ES256) with a market's or bank's key.</summary>
    public byte[] Sign(ECDsa key) => CoseSign1Message.SignEmbedded(Payload(), new CoseSigner(key, HashAlgorithmName.SHA256));

    /// <summary>
    /// Signs this message as COSE_Sign1 (ES256) with a key held elsewhere (the home card's purse key); the
    /// protected header names the key (kid = its SubjectPublicKeyInfo), so a payee learns the key from the message.
    /// </summary>
    public byte[] Sign(IMoneySigner signer)
    {
        var protectedHeader = new CborWriter(CborConformanceMode.Canonical);
        protectedHeader.WriteStartMap(2);
        protectedHeader.WriteInt32(1);
        protectedHeader.WriteInt32(-7);
        protectedHeader.WriteInt32(4);
        protectedHeader.WriteByteString(signer.KeyId);
        protectedHeader.WriteEndMap();
        var header = protectedHeader.Encode();
        var payload = Payload();
        var structure = new CborWriter(CborConformanceMode.Canonical);
        structure.WriteStartArray(4);
        structure.WriteTextString("Signature1");
        structure.WriteByteString(header);
        structure.WriteByteString([]);
        structure.WriteByteString(payload);
        structure.WriteEndArray();
        var signature = signer.SignStructure(structure.Encode());
        var message = new CborWriter(CborConformanceMode.Canonical);
        message.WriteTag((CborTag)18);
        message.WriteStartArray(4);
        message.WriteByteString(header);
        message.WriteStartMap(0);
        message.WriteEndMap();
        message.WriteByteString(payload);
        message.WriteByteString(signature);
        message.WriteEndArray();
        return message.Encode();
    }

    /// <summary>The key id (kid) in a COSE_Sign1 message's protected header: for the card's messages, the purse key's SubjectPublicKeyInfo.</summary>
    public static byte[]? KeyIdOf(byte[] cose)
    {
        try
        {
            return CoseMessage.DecodeSign1(cose).ProtectedHeaders.TryGetValue(CoseHeaderLabel.KeyIdentifier, out var kid) ? kid.GetValueAsBytes() : null;
        }
        catch (Exception e) when (e is CryptographicException or InvalidOperationException or CborContentException)
        {
            return null;
        }
    }

    /// <summary>The signer's key named by the message's kid (a SubjectPublicKeyInfo); null when it names none. Trust it only once bound to the card.</summary>
    public static ECDsa? SignerKeyOf(byte[] cose)
    {
        var kid = KeyIdOf(cose);
        if (kid is null) return null;
        var key = ECDsa.Create();
        try
        {
            key.ImportSubjectPublicKeyInfo(kid, out _);
            return key;
        }
        catch (CryptographicException)
        {
            key.Dispose();
            return null;
        }
    }

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

/// <summary>A COSE_Sign1 (ES256) signer whose key lives elsewhere: the home card's purse key.</summary>
public interface IMoneySigner
{
    /// <summary>The COSE key id put in the protected header.</summary>
    byte[] KeyId { get; }

    /// <summary>An ES256 signature (r||s) over a COSE Sig_structure.</summary>
    byte[] SignStructure(ReadOnlySpan<byte> toBeSigned);
}

/// <summary>The kinds of money messages.</summary>
public static class MoneyKinds
{
    /// <summary>The card-signed head of its payment log (mailed reports).</summary>
    public const string LogHead = "log-head";

    /// <summary>The card's seal over the purse's balances, log head and counter.</summary>
    public const string PurseSeal = "purse-seal";


    public const string PaymentRequest = "payment-request";
    public const string Payment = "payment";
    public const string Refill = "refill";
    public const string RefillAck = "refill-ack";
    public const string Cancellation = "cancellation";
    public const string CancellationConfirmation = "cancellation-confirmation";

    /// <summary>Whether the purse key may sign a message of this kind.</summary>
    public static bool IsMoney(string? kind) => kind is PaymentRequest or Payment or Refill or RefillAck or Cancellation or CancellationConfirmation or LogHead or PurseSeal;
}
