using System.Text;
using Daiko.Tls.Messages;

namespace Daiko.Tls.Tls12;

/// <summary>
/// A TLS 1.2 ServerHello (RFC 5246 §7.4.1.3) with the extensions this client may receive:
/// renegotiation_info (RFC 5746), extended_master_secret (RFC 7627), session_ticket (RFC 5077),
/// ALPN, an empty server_name and ec_point_formats. Anything else was not offered.
/// </summary>
internal sealed record ServerHello12(
    ushort Version,
    byte[] Random,
    byte[] SessionId,
    CipherSuite CipherSuite,
    bool ExtendedMasterSecret,
    byte[]? RenegotiationInfo,
    bool SessionTicket,
    string? Alpn,
    int? RecordSizeLimit = null)
{
    /// <summary>"DOWNGRD" + 01 / 00: the last 8 bytes of a TLS 1.3 server's random when it answers TLS 1.2 / 1.1 or below.</summary>
    public static ReadOnlySpan<byte> DowngradeTls12 => [0x44, 0x4F, 0x57, 0x4E, 0x47, 0x52, 0x44, 0x01];

    public static ReadOnlySpan<byte> DowngradeTls11 => [0x44, 0x4F, 0x57, 0x4E, 0x47, 0x52, 0x44, 0x00];

    public bool CarriesDowngradeSentinel => Random.AsSpan(24).SequenceEqual(DowngradeTls12) || Random.AsSpan(24).SequenceEqual(DowngradeTls11);

    /// <summary>Whether a ServerHello selects TLS 1.2 or below: it has no supported_versions extension.</summary>
    public static bool SelectsTls12OrBelow(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "ServerHello");
        r.ReadUInt16();
        r.ReadBytes(32);
        r.ReadVector8();
        r.ReadUInt16();
        r.ReadUInt8();
        if (r.IsEmpty) return true;
        var extensions = r.ReadSub16();
        while (!extensions.IsEmpty)
        {
            if ((ExtensionType)extensions.ReadUInt16() == ExtensionType.SupportedVersions) return false;
            extensions.ReadVector16();
        }
        return true;
    }

    public static ServerHello12 Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "ServerHello");
        var version = r.ReadUInt16();
        if (version < 0x0303)
        {
            throw new TlsException(TlsError.HandshakeFailure, AlertDescription.ProtocolVersion, $"the server speaks only {VersionName(version)}; this client speaks TLS 1.2 and 1.3");
        }
        if (version != 0x0303) throw new TlsException(TlsError.IllegalParameter, AlertDescription.ProtocolVersion, "the server chose an unknown version");
        var random = r.ReadBytes(32).ToArray();
        var sessionId = r.ReadVector8().ToArray();
        if (sessionId.Length > 32) throw TlsException.Decode("ServerHello (session id too long)");
        var suite = (CipherSuite)r.ReadUInt16();
        if (r.ReadUInt8() != 0) throw TlsException.Illegal("the server selected a compression method");
        var ems = false;
        var ticket = false;
        byte[]? renegotiation = null;
        string? alpn = null;
        int? recordSizeLimit = null;
        var seen = new HashSet<ushort>();
        if (!r.IsEmpty)
        {
            var extensions = r.ReadSub16();
            while (!extensions.IsEmpty)
            {
                var type = extensions.ReadUInt16();
                var data = extensions.ReadSub16();
                if (!seen.Add(type)) throw TlsException.Decode("ServerHello (duplicate extension)");
                switch ((ExtensionType)type)
                {
                    case ExtensionType.ExtendedMasterSecret:
                        ems = true;
                        break;
                    case ExtensionType.SessionTicket:
                        ticket = true;
                        break;
                    case ExtensionType.RenegotiationInfo:
                        renegotiation = data.ReadVector8().ToArray();
                        break;
                    case ExtensionType.ApplicationLayerProtocolNegotiation:
                    {
                        var list = data.ReadSub16(1);
                        alpn = Encoding.ASCII.GetString(list.ReadVector8(1));
                        list.EnsureEnd();
                        break;
                    }
                    case ExtensionType.ServerName:
                        break;
                    case ExtensionType.RecordSizeLimit:
                    {
                        // RFC 8449 §4: below 64 is illegal_parameter; in TLS 1.2 the limit counts the plaintext alone.
                        var limit = data.ReadUInt16();
                        if (limit < 64) throw TlsException.Illegal($"the server's record_size_limit {limit} is below 64");
                        recordSizeLimit = limit;
                        break;
                    }
                    case ExtensionType.EcPointFormats:
                    {
                        var formats = data.ReadVector8(1);
                        if (!formats.Contains((byte)0)) throw TlsException.Illegal("the server does not accept uncompressed points");
                        break;
                    }
                    default:
                        throw new TlsException(TlsError.IllegalParameter, AlertDescription.UnsupportedExtension, $"the server sent extension {type} the client did not offer");
                }
                data.EnsureEnd();
            }
        }
        r.EnsureEnd();
        return new ServerHello12(version, random, sessionId, suite, ems, renegotiation, ticket, alpn, recordSizeLimit);
    }

    private static string VersionName(ushort version) => version switch
    {
        0x0302 => "TLS 1.1",
        0x0301 => "TLS 1.0",
        0x0300 => "SSL 3.0",
        _ => $"version 0x{version:x4}",
    };
}
