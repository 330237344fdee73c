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

    /// <summary>Signs this message as COSE_Sign1 with <paramref name="key"/> (which may live in a token).</summary>
    public byte[] Sign(ECDsa key) => CoseSign1Message.SignEmbedded(Payload(), new CoseSigner(key, HashAlgorithmName.SHA256));

    /// <summary>Never prints fields.</summary>
    public sealed override string ToString() => Kind;

    /// <summary>The lowercase hex SHA-256 of a signed message (how a payment names its request).</summary>
    public static string Hash(byte[] cose) => Convert.ToHexString(SHA256.HashData(cose)).ToLowerInvariant();
}
