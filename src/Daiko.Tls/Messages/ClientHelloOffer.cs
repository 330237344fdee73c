using System.Text;

namespace Daiko.Tls.Messages;

/// <summary>
/// A ClientHello someone else sent, read strictly (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2): what the home
/// server needs to know of a handshake it is asked to sign for (assist mode) — the random, the offered
/// suites and versions, the market it names (server_name, one host_name), the signature schemes it
/// accepts and which extensions it carries. A duplicate extension, compression, or a server_name of
/// another type is refused.
/// </summary>
internal sealed record ClientHelloOffer(
    byte[] Random,
    byte[] SessionId,
    IReadOnlyList<CipherSuite> Suites,
    string? ServerName,
    IReadOnlyList<ushort> Versions,
    IReadOnlyList<SignatureScheme> SignatureSchemes,
    IReadOnlySet<ExtensionType> Extensions)
{
    /// <summary>TLS 1.3 is offered (supported_versions names 0x0304).</summary>
    public bool OffersTls13 => Versions.Contains((ushort)0x0304);

    public static ClientHelloOffer Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "ClientHello");
        if (r.ReadUInt16() != 0x0303) throw TlsException.Illegal("the ClientHello does not offer TLS 1.2 or 1.3");
        var random = r.ReadBytes(32).ToArray();
        var sessionId = r.ReadVector8().ToArray();
        if (sessionId.Length > 32) throw TlsException.Decode("ClientHello (session id too long)");
        var suiteList = r.ReadSub16(2);
        var suites = new List<CipherSuite>();
        while (!suiteList.IsEmpty) suites.Add((CipherSuite)suiteList.ReadUInt16());
        var compression = r.ReadVector8(1);
        if (compression.Length != 1 || compression[0] != 0) throw TlsException.Illegal("the ClientHello offers compression");
        var extensions = r.ReadSub16();
        r.EnsureEnd();
        string? host = null;
        var versions = new List<ushort>();
        var schemes = new List<SignatureScheme>();
        var seen = new HashSet<ExtensionType>();
        while (!extensions.IsEmpty)
        {
            var type = (ExtensionType)extensions.ReadUInt16();
            var data = extensions.ReadSub16();
            if (!seen.Add(type)) throw TlsException.Illegal("duplicate extension in ClientHello");
            switch (type)
            {
                case ExtensionType.ServerName:
                {
                    var list = data.ReadSub16(1);
                    if (list.ReadUInt8() != 0) throw TlsException.Illegal("server_name of an unknown type");
                    host = Encoding.ASCII.GetString(list.ReadVector16(1));
                    list.EnsureEnd();
                    break;
                }
                case ExtensionType.SupportedVersions:
                {
                    var list = data.ReadSub8(2);
                    while (!list.IsEmpty) versions.Add(list.ReadUInt16());
                    break;
                }
                case ExtensionType.SignatureAlgorithms:
                {
                    var list = data.ReadSub16(2);
                    while (!list.IsEmpty) schemes.Add((SignatureScheme)list.ReadUInt16());
                    break;
                }
                default:
                    data.ReadBytes(data.Remaining);
                    break;
            }
            data.EnsureEnd();
        }
        return new ClientHelloOffer(random, sessionId, suites, host, versions, schemes, seen);
    }
}

/// <summary>A run of handshake messages (each with its 4-byte header), as a transcript holds them.</summary>
internal static class HandshakeMessages
{
    /// <summary>Whether two certificate chains are the same certificates, byte for byte, in the same order.</summary>
    public static bool SameChain(IReadOnlyList<byte[]> a, IReadOnlyList<byte[]> b) =>
        a.Count == b.Count && a.Zip(b).All(p => p.First.AsSpan().SequenceEqual(p.Second));

    /// <summary>
    /// The messages of <paramref name="transcript"/>: type, and where each (header included) starts and
    /// ends. Stops after <paramref name="max"/> + 1 messages (more than expected is refused by the caller);
    /// a truncated message is a decode_error.
    /// </summary>
    public static List<(HandshakeType Type, int Start, int End)> Split(ReadOnlySpan<byte> transcript, int max)
    {
        var messages = new List<(HandshakeType, int, int)>();
        var r = new TlsReader(transcript, "transcript");
        while (!r.IsEmpty && messages.Count <= max)
        {
            var start = transcript.Length - r.Remaining;
            var type = (HandshakeType)r.ReadUInt8();
            r.ReadVector24();
            messages.Add((type, start, transcript.Length - r.Remaining));
        }
        return messages;
    }
}
