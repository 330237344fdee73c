using System.Formats.Cbor;
using System.Security.Cryptography;

namespace Daiko.Tls;

/// <summary>
/// A TLS 1.3 session ticket with its PSK and the context it may be used in (SNI, ALPN, suite).
/// Serializes to CBOR so the home server can hand it to a terminal. ToString never prints secrets.
/// </summary>
public sealed class SessionTicket
{
    public SessionTicket(byte[] identity, byte[] psk, CipherSuite suite, string? serverName, string? alpn,
        uint lifetimeSeconds, uint ageAdd, uint maxEarlyData, DateTimeOffset receivedAt, byte[] nonce)
    {
        Identity = identity;
        Psk = psk;
        Suite = suite;
        ServerName = serverName;
        Alpn = alpn;
        LifetimeSeconds = lifetimeSeconds;
        AgeAdd = ageAdd;
        MaxEarlyData = maxEarlyData;
        ReceivedAt = receivedAt;
        Nonce = nonce;
    }

    public byte[] Identity { get; }

    public byte[] Psk { get; }

    public CipherSuite Suite { get; }

    public string? ServerName { get; }

    public string? Alpn { get; }

    public uint LifetimeSeconds { get; }

    public uint AgeAdd { get; }

    public uint MaxEarlyData { get; }

    public DateTimeOffset ReceivedAt { get; }

    public byte[] Nonce { get; }

    /// <summary>
    /// TLS 1.3 (a PSK ticket) or TLS 1.2 (an RFC 5077 ticket, whose <see cref="Psk"/> is the session's
    /// 48-byte master secret and whose <see cref="Suite"/> is a TLS 1.2 suite).
    /// </summary>
    public TlsVersions Version { get; init; } = TlsVersions.Tls13;

    public DateTimeOffset ExpiresAt => ReceivedAt.AddSeconds(Math.Min(LifetimeSeconds, 7 * 24 * 3600));

    public bool IsExpired(DateTimeOffset now) => now >= ExpiresAt;

    /// <summary>Whether this ticket may be offered for a connection to <paramref name="serverName"/> with these suites.</summary>
    public bool Fits(string? serverName, IReadOnlyList<CipherSuite> suites) =>
        string.Equals(ServerName, serverName, StringComparison.OrdinalIgnoreCase)
        && (Version == TlsVersions.Tls12 ? suites.Contains(Suite) : suites.Any(s => KeySchedule.CipherSuiteInfo.Find(s)?.Hash == KeySchedule.CipherSuiteInfo.Find(Suite)?.Hash));

    /// <summary>Early data must run under the ALPN the ticket was issued for (RFC 8446 §4.2.10).</summary>
    public bool AllowsEarlyDataWith(IReadOnlyList<string> alpn, IReadOnlyList<CipherSuite> suites) =>
        MaxEarlyData > 0 && suites.Contains(Suite) && (Alpn is null ? alpn.Count == 0 : alpn.Count > 0 && alpn[0] == Alpn);

    public byte[] ToCbor()
    {
        var w = new CborWriter();
        w.WriteStartMap(Version == TlsVersions.Tls12 ? 11 : 10);
        if (Version == TlsVersions.Tls12)
        {
            w.WriteTextString("version"); w.WriteUInt32(0x0303);
        }
        w.WriteTextString("identity"); w.WriteByteString(Identity);
        w.WriteTextString("psk"); w.WriteByteString(Psk);
        w.WriteTextString("suite"); w.WriteUInt32((ushort)Suite);
        w.WriteTextString("sni"); if (ServerName is null) w.WriteNull(); else w.WriteTextString(ServerName);
        w.WriteTextString("alpn"); if (Alpn is null) w.WriteNull(); else w.WriteTextString(Alpn);
        w.WriteTextString("lifetime"); w.WriteUInt32(LifetimeSeconds);
        w.WriteTextString("age_add"); w.WriteUInt32(AgeAdd);
        w.WriteTextString("max_early_data"); w.WriteUInt32(MaxEarlyData);
        w.WriteTextString("received_at"); w.WriteInt64(ReceivedAt.ToUnixTimeMilliseconds());
        w.WriteTextString("nonce"); w.WriteByteString(Nonce);
        w.WriteEndMap();
        return w.Encode();
    }

    public static SessionTicket FromCbor(ReadOnlySpan<byte> cbor)
    {
        try
        {
            var r = new CborReader(cbor.ToArray());
            var count = r.ReadStartMap();
            byte[]? identity = null, psk = null, nonce = null;
            ushort suite = 0;
            string? sni = null, alpn = null;
            uint lifetime = 0, ageAdd = 0, maxEarly = 0;
            long received = 0;
            var version = TlsVersions.Tls13;
            for (var i = 0; i < count; i++)
            {
                switch (r.ReadTextString())
                {
                    case "identity": identity = r.ReadByteString(); break;
                    case "psk": psk = r.ReadByteString(); break;
                    case "suite": suite = checked((ushort)r.ReadUInt32()); break;
                    case "sni": sni = ReadNullableText(r); break;
                    case "alpn": alpn = ReadNullableText(r); break;
                    case "lifetime": lifetime = r.ReadUInt32(); break;
                    case "age_add": ageAdd = r.ReadUInt32(); break;
                    case "max_early_data": maxEarly = r.ReadUInt32(); break;
                    case "received_at": received = r.ReadInt64(); break;
                    case "nonce": nonce = r.ReadByteString(); break;
                    case "version": version = r.ReadUInt32() == 0x0303 ? TlsVersions.Tls12 : throw new FormatException("unknown ticket version"); break;
                    default: r.SkipValue(); break;
                }
            }
            r.ReadEndMap();
            if (r.BytesRemaining != 0) throw new FormatException("trailing bytes after the ticket");
            if (identity is null || psk is null || nonce is null || suite == 0) throw new FormatException("the ticket lacks a required field");
            var valid = version == TlsVersions.Tls12
                ? KeySchedule.CipherSuiteInfo.FindTls12((CipherSuite)suite) is not null && psk.Length == Tls12.MasterSecret12.Length
                : KeySchedule.CipherSuiteInfo.Find((CipherSuite)suite) is { } info && psk.Length == info.HashLength;
            if (!valid) throw new FormatException("the ticket's suite or secret length is invalid");
            return new SessionTicket(identity, psk, (CipherSuite)suite, sni, alpn, lifetime, ageAdd, maxEarly, DateTimeOffset.FromUnixTimeMilliseconds(received), nonce)
            {
                Version = version,
            };
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or OverflowException)
        {
            throw new FormatException("the session ticket is not valid CBOR of the expected shape", e);
        }
    }

    internal static string? ReadNullableText(CborReader r)
    {
        if (r.PeekState() == CborReaderState.Null)
        {
            r.ReadNull();
            return null;
        }
        return r.ReadTextString();
    }

    /// <summary>Wipes the PSK (after use or when discarded).</summary>
    public void Wipe() => CryptographicOperations.ZeroMemory(Psk);

    public override string ToString() => $"SessionTicket({(Version == TlsVersions.Tls12 ? "TLS 1.2, " : "")}{Suite}, sni={ServerName}, alpn={Alpn}, lifetime={LifetimeSeconds}s, max_early_data={MaxEarlyData})";
}
