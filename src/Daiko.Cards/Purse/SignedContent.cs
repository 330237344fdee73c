using System.Formats.Cbor;

namespace Daiko.Cards.Purse;

/// <summary>
/// What each of the home card's keys agrees to sign, checked before the token sees a hash: the TLS
/// identity key only TLS 1.3 client CertificateVerify content, the purse key only a COSE_Sign1
/// Sig_structure over a money message. The two forms cannot be mistaken for each other (one starts
/// with 64 spaces, the other with a CBOR array header).
/// </summary>
internal static class SignedContent
{
    /// <summary>RFC 8446 §4.4.3: the context string of a client's CertificateVerify.</summary>
    private static ReadOnlySpan<byte> ClientContext => "TLS 1.3, client CertificateVerify"u8;

    private const int PaddingLength = 64;

    /// <summary>64 × 0x20, the client context string, 0x00, then a SHA-256 or SHA-384 transcript hash.</summary>
    public static bool IsClientCertificateVerify(ReadOnlySpan<byte> content)
    {
        var prefix = PaddingLength + ClientContext.Length + 1;
        var hashLength = content.Length - prefix;
        if (hashLength is not (32 or 48)) return false;
        if (content[..PaddingLength].ContainsAnyExcept((byte)0x20)) return false;
        if (!content.Slice(PaddingLength, ClientContext.Length).SequenceEqual(ClientContext)) return false;
        return content[prefix - 1] == 0x00;
    }

    /// <summary>
    /// RFC 9052 §4.4: ["Signature1", protected, external_aad, payload], where the payload is a canonical
    /// CBOR map whose "kind" is one of the money kinds.
    /// </summary>
    public static bool IsMoneySigStructure(ReadOnlySpan<byte> toBeSigned)
    {
        try
        {
            var reader = new CborReader(toBeSigned.ToArray(), CborConformanceMode.Lax);
            if (reader.ReadStartArray() != 4 || reader.ReadTextString() != "Signature1") return false;
            reader.ReadByteString();
            reader.ReadByteString();
            var payload = reader.ReadByteString();
            reader.ReadEndArray();
            return reader.BytesRemaining == 0 && MoneyKinds.IsMoney(KindOf(payload));
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or FormatException)
        {
            return false;
        }
    }

    private static string? KindOf(byte[] payload)
    {
        var reader = new CborReader(payload, CborConformanceMode.Canonical);
        var count = reader.ReadStartMap() ?? 0;
        string? kind = null;
        for (var i = 0; i < count; i++)
        {
            var key = reader.ReadTextString();
            if (key == "kind" && reader.PeekState() == CborReaderState.TextString) kind = reader.ReadTextString();
            else reader.SkipValue();
        }
        reader.ReadEndMap();
        return reader.BytesRemaining == 0 ? kind : null;
    }
}
