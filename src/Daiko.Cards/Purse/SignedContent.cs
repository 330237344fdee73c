using Daiko.Money;
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
    /// A TLS 1.2 client CertificateVerify signs the handshake messages so far (RFC 5246 §7.4.8), which
    /// carry no context string. Accepted only when the bytes are whole handshake messages from a
    /// ClientHello through a ServerHello of TLS 1.2, a ServerHelloDone and, last, the ClientKeyExchange —
    /// a form neither TLS 1.3 content (64 spaces) nor a COSE Sig_structure (a CBOR array) can take.
    /// </summary>
    public static bool IsTls12ClientHandshake(ReadOnlySpan<byte> content)
    {
        const byte ClientHello = 1, ServerHello = 2, ServerHelloDone = 14, ClientKeyExchange = 16;
        byte first = 0, last = 0;
        var sawTls12ServerHello = false;
        var sawDone = false;
        while (!content.IsEmpty)
        {
            if (content.Length < 4) return false;
            var type = content[0];
            var length = (content[1] << 16) | (content[2] << 8) | content[3];
            if (content.Length < 4 + length) return false;
            var body = content.Slice(4, length);
            if (first == 0) first = type;
            if (type == ServerHello) sawTls12ServerHello = body.Length >= 2 && body[0] == 3 && body[1] == 3;
            if (type == ServerHelloDone) sawDone = true;
            last = type;
            content = content[(4 + length)..];
        }
        return first == ClientHello && sawTls12ServerHello && sawDone && last == ClientKeyExchange;
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
