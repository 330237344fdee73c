using System.Formats.Cbor;
using System.Security.Cryptography;
using System.Security.Cryptography.Cose;

namespace Daiko.Money;

/// <summary>
/// A message that moves money: a canonical CBOR map of its <see cref="Kind"/> and fields, signed as
/// COSE_Sign1 (ES256) by its owner — payment-request and cancellation-confirmation by a market, refill
/// by a bank, payment, refill-ack, cancellation and log-head by the home card (seed Figs. 17-20).
/// Amounts are integers in minor units, times Unix seconds.
/// </summary>
public abstract record MoneyMessage
{
    /// <summary>The message's kind (the <c>kind</c> field).</summary>
    public abstract string Kind { get; }

    internal abstract void Write(MoneyWriter w);

    /// <summary>The canonical CBOR payload that is signed: a map whose keys are ordered by length, then bytes.</summary>
    public byte[] Payload()
    {
        var fields = new MoneyWriter();
        fields.Text("kind", Kind);
        Write(fields);
        var w = new CborWriter(CborConformanceMode.Canonical);
        w.WriteStartMap(fields.Entries.Count);
        foreach (var (key, value) in fields.Entries.OrderBy(e => e.Key.Length).ThenBy(e => e.Key, StringComparer.Ordinal))
        {
            w.WriteTextString(key);
            value(w);
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
        catch (Exception e) when (e is CryptographicException or PlatformNotSupportedException)
        {
            // A key on a curve this platform lacks is as unusable as a malformed one.
            key.Dispose();
            return null;
        }
    }

    /// <summary>Never prints fields.</summary>
    public sealed override string ToString() => Kind;

    /// <summary>The lowercase hex SHA-256 of a signed message (how a payment names its request).</summary>
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

/// <summary>The kinds of money messages: the one list the home card's purse key checks before it signs.</summary>
public static class MoneyKinds
{
    public const string PaymentRequest = "payment-request";
    public const string Payment = "payment";
    public const string Refill = "refill";
    public const string RefillAck = "refill-ack";
    public const string Cancellation = "cancellation";
    public const string CancellationConfirmation = "cancellation-confirmation";

    /// <summary>The card-signed head of its payment log (mailed reports).</summary>
    public const string LogHead = "log-head";

    /// <summary>The card's seal over the purse's balances, log head and counter.</summary>
    public const string PurseSeal = "purse-seal";

    /// <summary>Whether the purse key may sign a message of this kind.</summary>
    public static bool IsMoney(string? kind) => kind is PaymentRequest or Payment or Refill or RefillAck or Cancellation or CancellationConfirmation or LogHead or PurseSeal;
}
