namespace Daiko.Tls.Messages;

/// <summary>
/// ServerHello or HelloRetryRequest (RFC 8446 §4.1.3-4.1.4). Parsed into the fields the client
/// acts on; anything malformed is a decode_error.
/// </summary>
internal sealed record ServerHello(
    bool IsHelloRetryRequest,
    byte[] Random,
    byte[] SessionIdEcho,
    CipherSuite CipherSuite,
    ushort SelectedVersion,
    NamedGroup? KeyShareGroup,
    byte[]? KeyShare,
    int? SelectedIdentity,
    byte[]? Cookie)
{
    /// <summary>SHA-256("HelloRetryRequest"), the random value that marks a HelloRetryRequest.</summary>
    public static ReadOnlySpan<byte> HelloRetryRequestRandom =>
    [
        0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
        0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
    ];

    public static ServerHello Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "ServerHello");
        var legacyVersion = r.ReadUInt16();
        if (legacyVersion != 0x0303) throw new TlsException(TlsError.IllegalParameter, AlertDescription.ProtocolVersion, "the server does not speak TLS 1.3");
        var random = r.ReadBytes(32).ToArray();
        var sessionId = r.ReadVector8().ToArray();
        if (sessionId.Length > 32) throw TlsException.Decode("ServerHello (session id too long)");
        var suite = (CipherSuite)r.ReadUInt16();
        if (r.ReadUInt8() != 0) throw TlsException.Illegal("the server selected a compression method");
        var isHrr = random.AsSpan().SequenceEqual(HelloRetryRequestRandom);
        ushort? version = null;
        NamedGroup? group = null;
        byte[]? share = null;
        int? identity = null;
        byte[]? cookie = null;
        var seen = new HashSet<ushort>();
        if (!r.IsEmpty)
        {
            var extensions = r.ReadSub16();
            while (!extensions.IsEmpty)
            {
                var type = extensions.ReadUInt16();
                var data = extensions.ReadSub16();
                if (!seen.Add(type)) throw TlsException.Illegal("duplicate extension in ServerHello");
                switch ((ExtensionType)type)
                {
                    case ExtensionType.SupportedVersions:
                        version = data.ReadUInt16();
                        break;
                    case ExtensionType.KeyShare:
                        group = (NamedGroup)data.ReadUInt16();
                        if (!isHrr) share = data.ReadVector16(1).ToArray();
                        break;
                    case ExtensionType.PreSharedKey when !isHrr:
                        identity = data.ReadUInt16();
                        break;
                    case ExtensionType.Cookie when isHrr:
                        cookie = data.ReadVector16(1).ToArray();
                        break;
                    default:
                        throw new TlsException(TlsError.IllegalParameter, AlertDescription.UnsupportedExtension, $"the server sent extension {type} the client did not offer");
                }
                data.EnsureEnd();
            }
        }
        r.EnsureEnd();
        // RFC 8446 §4.2.1: a supported_versions naming anything but TLS 1.3 is illegal_parameter;
        // no supported_versions at all is a server that does not speak TLS 1.3.
        if (version is null) throw new TlsException(TlsError.IllegalParameter, AlertDescription.ProtocolVersion, "the server did not negotiate TLS 1.3");
        if (version != 0x0304) throw TlsException.Illegal($"the server's supported_versions selected 0x{version:x4}, which the client did not offer");
        return new ServerHello(isHrr, random, sessionId, suite, version.Value, group, share, identity, cookie);
    }
}
