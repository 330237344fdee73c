using System.Text;

namespace Daiko.Tls.Messages;

/// <summary>
/// EncryptedExtensions (RFC 8446 §4.3.1): the negotiated ALPN, whether early data was accepted, and
/// every extension type present (the client refuses those it never offered).
/// </summary>
internal sealed record EncryptedExtensions(string? Alpn, bool EarlyDataAccepted, IReadOnlySet<ushort> Types, int? RecordSizeLimit = null)
{
    public static EncryptedExtensions Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "EncryptedExtensions");
        var extensions = r.ReadSub16();
        r.EnsureEnd();
        string? alpn = null;
        var early = false;
        int? recordSizeLimit = null;
        var seen = new HashSet<ushort>();
        while (!extensions.IsEmpty)
        {
            var type = extensions.ReadUInt16();
            var data = extensions.ReadSub16();
            if (!seen.Add(type)) throw TlsException.Illegal("duplicate extension in EncryptedExtensions");
            switch ((ExtensionType)type)
            {
                case ExtensionType.ApplicationLayerProtocolNegotiation:
                {
                    var list = data.ReadSub16(1);
                    alpn = Encoding.ASCII.GetString(list.ReadVector8(1));
                    list.EnsureEnd();
                    break;
                }
                case ExtensionType.EarlyData:
                    early = true;
                    break;
                case ExtensionType.RecordSizeLimit:
                {
                    // RFC 8449 §4: below 64 is illegal_parameter; above 2^14 + 1 the client keeps its own maximum.
                    var limit = data.ReadUInt16();
                    data.EnsureEnd();
                    if (limit < 64) throw TlsException.Illegal($"the server's record_size_limit {limit} is below 64");
                    recordSizeLimit = limit;
                    break;
                }
                case ExtensionType.KeyShare or ExtensionType.PreSharedKey or ExtensionType.SupportedVersions or ExtensionType.SignatureAlgorithms or ExtensionType.Cookie or ExtensionType.PskKeyExchangeModes:
                    throw TlsException.Illegal($"extension {type} is not allowed in EncryptedExtensions");
                default:
                    // server_name ack and supported_groups carry nothing we act on; the handshake checks each was offered.
                    while (!data.IsEmpty) data.ReadUInt8();
                    break;
            }
            if ((ExtensionType)type is ExtensionType.EarlyData) data.EnsureEnd();
        }
        return new EncryptedExtensions(alpn, early, seen, recordSizeLimit);
    }
}
