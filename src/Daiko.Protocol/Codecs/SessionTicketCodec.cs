using System.Formats.Cbor;
using Daiko.Tls;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Tls12;

namespace Daiko.Protocol.Codecs;

/// <summary>
/// A <see cref="SessionTicket"/> as CBOR (identity, psk, suite, sni, alpn, lifetime, age_add,
/// max_early_data, received_at, nonce; version 0x0303 for a TLS 1.2 ticket, whose psk is the master secret;
/// psk_ke true when the market is known to resume with psk_ke): how the home server hands a ticket to a terminal, and how
/// <c>daiko tls connect --save-ticket</c> stores one. Decoding validates the suite and PSK length.
/// </summary>
public static class SessionTicketCodec
{
    public static byte[] Encode(SessionTicket ticket)
    {
        var w = new CborWriter();
        w.WriteStartMap(10 + (ticket.Version == TlsVersions.Tls12 ? 1 : 0) + (ticket.MarketAcceptsPskKe ? 1 : 0));
        if (ticket.Version == TlsVersions.Tls12)
        {
            w.WriteTextString("version"); w.WriteUInt32(0x0303);
        }
        w.WriteTextString("identity"); w.WriteByteString(ticket.Identity);
        w.WriteTextString("psk"); w.WriteByteString(ticket.Psk);
        w.WriteTextString("suite"); w.WriteUInt32((ushort)ticket.Suite);
        w.WriteTextString("sni"); WriteNullableText(w, ticket.ServerName);
        w.WriteTextString("alpn"); WriteNullableText(w, ticket.Alpn);
        w.WriteTextString("lifetime"); w.WriteUInt32(ticket.LifetimeSeconds);
        w.WriteTextString("age_add"); w.WriteUInt32(ticket.AgeAdd);
        w.WriteTextString("max_early_data"); w.WriteUInt32(ticket.MaxEarlyData);
        w.WriteTextString("received_at"); w.WriteInt64(ticket.ReceivedAt.ToUnixTimeMilliseconds());
        w.WriteTextString("nonce"); w.WriteByteString(ticket.Nonce);
        if (ticket.MarketAcceptsPskKe)
        {
            w.WriteTextString("psk_ke"); w.WriteBoolean(true);
        }
        w.WriteEndMap();
        return w.Encode();
    }

    /// <summary>Decodes a ticket; FormatException for anything but a whole, valid one.</summary>
    public static SessionTicket Decode(byte[] cbor)
    {
        try
        {
            var r = new CborReader(cbor);
            var count = r.ReadStartMap();
            byte[]? identity = null, psk = null, nonce = null;
            ushort suite = 0;
            string? sni = null, alpn = null;
            uint lifetime = 0, ageAdd = 0, maxEarly = 0;
            long received = 0;
            var version = TlsVersions.Tls13;
            var pskKe = false;
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
                    case "psk_ke": pskKe = r.ReadBoolean(); break;
                    default: r.SkipValue(); break;
                }
            }
            r.ReadEndMap();
            if (r.BytesRemaining != 0) throw new FormatException("trailing bytes after the ticket");
            if (identity is null || psk is null || nonce is null || suite == 0) throw new FormatException("the ticket lacks a required field");
            var valid = version == TlsVersions.Tls12
                ? CipherSuiteInfo.FindTls12((CipherSuite)suite) is not null && psk.Length == MasterSecret12.Length
                : CipherSuiteInfo.Find((CipherSuite)suite) is { } info && psk.Length == info.HashLength;
            if (!valid) throw new FormatException("the ticket's suite or secret length is invalid");
            return new SessionTicket(identity, psk, (CipherSuite)suite, sni, alpn, lifetime, ageAdd, maxEarly, DateTimeOffset.FromUnixTimeMilliseconds(received), nonce)
            {
                Version = version,
                MarketAcceptsPskKe = pskKe,
            };
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or OverflowException or ArgumentOutOfRangeException)
        {
            throw new FormatException("the session ticket is not valid CBOR of the expected shape", e);
        }
    }

    internal static void WriteNullableText(CborWriter w, string? value)
    {
        if (value is null) w.WriteNull();
        else w.WriteTextString(value);
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
}
