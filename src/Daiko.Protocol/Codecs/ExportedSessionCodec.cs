using System.Formats.Cbor;
using Daiko.Tls;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Tls12;

namespace Daiko.Protocol.Codecs;

/// <summary>
/// An <see cref="ExportedSession"/> as CBOR (suite, client/server application traffic secrets, both
/// sequence numbers, resumption master secret, sni, alpn, pending plaintext, pending transport bytes):
/// how the home server hands a live session to a terminal. For TLS 1.2 each secret is that
/// direction's key-block write key followed by its fixed IV, and the master secret stands for the resumption one. Decoding validates the secrets' lengths.
/// </summary>
public static class ExportedSessionCodec
{
    public static byte[] Encode(ExportedSession session)
    {
        var w = new CborWriter();
        w.WriteStartMap(10);
        w.WriteTextString("suite"); w.WriteUInt32((ushort)session.Suite);
        w.WriteTextString("client_secret"); w.WriteByteString(session.ClientSecret);
        w.WriteTextString("server_secret"); w.WriteByteString(session.ServerSecret);
        w.WriteTextString("client_seq"); w.WriteUInt64(session.ClientSequence);
        w.WriteTextString("server_seq"); w.WriteUInt64(session.ServerSequence);
        w.WriteTextString("res_master"); w.WriteByteString(session.ResumptionMasterSecret);
        w.WriteTextString("sni"); SessionTicketCodec.WriteNullableText(w, session.ServerName);
        w.WriteTextString("alpn"); SessionTicketCodec.WriteNullableText(w, session.Alpn);
        w.WriteTextString("pending_plaintext"); w.WriteByteString(session.PendingPlaintext);
        w.WriteTextString("pending_transport"); w.WriteByteString(session.PendingTransportBytes);
        w.WriteEndMap();
        return w.Encode();
    }

    /// <summary>Decodes an exported session; FormatException for anything but a whole, valid one.</summary>
    public static ExportedSession Decode(byte[] cbor)
    {
        try
        {
            var r = new CborReader(cbor);
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
                    case "sni": sni = SessionTicketCodec.ReadNullableText(r); break;
                    case "alpn": alpn = SessionTicketCodec.ReadNullableText(r); break;
                    case "pending_plaintext": pp = r.ReadByteString(); break;
                    case "pending_transport": pt = r.ReadByteString(); break;
                    default: r.SkipValue(); break;
                }
            }
            r.ReadEndMap();
            if (r.BytesRemaining != 0) throw new FormatException("trailing bytes after the exported session");
            var info = CipherSuiteInfo.FindAny((CipherSuite)suite) ?? throw new FormatException("unknown cipher suite in the exported session");
            var secretLength = info.IsTls12 ? info.KeyLength + info.Tls12FixedIvLength : info.HashLength;
            var masterLength = info.IsTls12 ? MasterSecret12.Length : info.HashLength;
            if (c is null || s is null || rms is null || c.Length != secretLength || s.Length != secretLength || (rms.Length != masterLength && rms.Length != 0))
                throw new FormatException("the exported session's secrets are missing or of the wrong length");
            return new ExportedSession((CipherSuite)suite, c, s, cs, ss, rms, sni, alpn, pp, pt);
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or OverflowException or ArgumentOutOfRangeException)
        {
            throw new FormatException("the exported session is not valid CBOR of the expected shape", e);
        }
    }
}
