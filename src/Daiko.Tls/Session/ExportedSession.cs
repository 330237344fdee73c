using System.Formats.Cbor;
using System.Security.Cryptography;

namespace Daiko.Tls;

/// <summary>
/// The state needed to continue a live connection's record layer elsewhere: the suite, both
/// application traffic secrets with their sequence numbers, the resumption master secret (so later
/// NewSessionTickets still yield PSKs), plaintext already decrypted but not yet delivered, and raw
/// transport bytes read past the last processed record. ToString never prints secrets.
/// </summary>
public sealed class ExportedSession
{
    public ExportedSession(CipherSuite suite, byte[] clientSecret, byte[] serverSecret, ulong clientSequence, ulong serverSequence,
        byte[] resumptionMasterSecret, string? serverName, string? alpn, byte[] pendingPlaintext, byte[] pendingTransportBytes)
    {
        Suite = suite;
        ClientSecret = clientSecret;
        ServerSecret = serverSecret;
        ClientSequence = clientSequence;
        ServerSequence = serverSequence;
        ResumptionMasterSecret = resumptionMasterSecret;
        ServerName = serverName;
        Alpn = alpn;
        PendingPlaintext = pendingPlaintext;
        PendingTransportBytes = pendingTransportBytes;
    }

    public CipherSuite Suite { get; }

    public byte[] ClientSecret { get; }

    public byte[] ServerSecret { get; }

    public ulong ClientSequence { get; }

    public ulong ServerSequence { get; }

    public byte[] ResumptionMasterSecret { get; }

    public string? ServerName { get; }

    public string? Alpn { get; }

    public byte[] PendingPlaintext { get; }

    public byte[] PendingTransportBytes { get; }

    /// <summary>
    /// The version of the exported connection. For TLS 1.2 each "secret" is that direction's key-block
    /// write key followed by its fixed IV, and the resumption master secret is the session's master secret.
    /// </summary>
    public TlsVersions Version => KeySchedule.CipherSuiteInfo.FindTls12(Suite) is null ? TlsVersions.Tls13 : TlsVersions.Tls12;

    public byte[] ToCbor()
    {
        var w = new CborWriter();
        w.WriteStartMap(10);
        w.WriteTextString("suite"); w.WriteUInt32((ushort)Suite);
        w.WriteTextString("client_secret"); w.WriteByteString(ClientSecret);
        w.WriteTextString("server_secret"); w.WriteByteString(ServerSecret);
        w.WriteTextString("client_seq"); w.WriteUInt64(ClientSequence);
        w.WriteTextString("server_seq"); w.WriteUInt64(ServerSequence);
        w.WriteTextString("res_master"); w.WriteByteString(ResumptionMasterSecret);
        w.WriteTextString("sni"); if (ServerName is null) w.WriteNull(); else w.WriteTextString(ServerName);
        w.WriteTextString("alpn"); if (Alpn is null) w.WriteNull(); else w.WriteTextString(Alpn);
        w.WriteTextString("pending_plaintext"); w.WriteByteString(PendingPlaintext);
        w.WriteTextString("pending_transport"); w.WriteByteString(PendingTransportBytes);
        w.WriteEndMap();
        return w.Encode();
    }

    public static ExportedSession FromCbor(ReadOnlySpan<byte> cbor)
    {
        try
        {
            var r = new CborReader(cbor.ToArray());
            var count = r.ReadStartMap();
            ushort suite = 0;
            byte[]? c = null, s = null, rms = null, pp = [], pt = [];
            ulong cs = 0, ss = 0;
            string? sni = null, alpn = null;
            for (var i = 0; i < count; i++)
            {
                switch (r.ReadTextString())
                {
                    case "suite": suite = checked((ushort)r.ReadUInt32()); break;
                    case "client_secret": c = r.ReadByteString(); break;
                    case "server_secret": s = r.ReadByteString(); break;
                    case "client_seq": cs = r.ReadUInt64(); break;
                    case "server_seq": ss = r.ReadUInt64(); break;
                    case "res_master": rms = r.ReadByteString(); break;
                    case "sni": sni = SessionTicket.ReadNullableText(r); break;
                    case "alpn": alpn = SessionTicket.ReadNullableText(r); break;
                    case "pending_plaintext": pp = r.ReadByteString(); break;
                    case "pending_transport": pt = r.ReadByteString(); break;
                    default: r.SkipValue(); break;
                }
            }
            r.ReadEndMap();
            if (r.BytesRemaining != 0) throw new FormatException("trailing bytes after the exported session");
            var info = KeySchedule.CipherSuiteInfo.FindAny((CipherSuite)suite) ?? throw new FormatException("unknown cipher suite in the exported session");
            var secretLength = info.IsTls12 ? info.KeyLength + info.Tls12FixedIvLength : info.HashLength;
            var masterLength = info.IsTls12 ? Tls12.MasterSecret12.Length : info.HashLength;
            if (c is null || s is null || rms is null || c.Length != secretLength || s.Length != secretLength || rms.Length != masterLength)
                throw new FormatException("the exported session's secrets are missing or of the wrong length");
            return new ExportedSession((CipherSuite)suite, c, s, cs, ss, rms, sni, alpn, pp, pt);
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or OverflowException)
        {
            throw new FormatException("the exported session is not valid CBOR of the expected shape", e);
        }
    }

    public void Wipe()
    {
        CryptographicOperations.ZeroMemory(ClientSecret);
        CryptographicOperations.ZeroMemory(ServerSecret);
        CryptographicOperations.ZeroMemory(ResumptionMasterSecret);
        CryptographicOperations.ZeroMemory(PendingPlaintext);
    }

    public override string ToString() => $"ExportedSession({Suite}, sni={ServerName}, alpn={Alpn}, client_seq={ClientSequence}, server_seq={ServerSequence})";
}
