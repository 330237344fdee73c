namespace Daiko.Tls.Messages;

/// <summary>Certificate (RFC 8446 §4.4.2): a context and a chain of DER certificates, leaf first.</summary>
internal sealed record CertificateMessage(byte[] Context, IReadOnlyList<byte[]> Chain)
{
    public static CertificateMessage Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "Certificate");
        var context = r.ReadVector8().ToArray();
        var list = r.ReadSub24();
        r.EnsureEnd();
        var chain = new List<byte[]>();
        while (!list.IsEmpty)
        {
            chain.Add(list.ReadVector24(1).ToArray());
            list.ReadVector16();
        }
        return new CertificateMessage(context, chain);
    }

    public byte[] Encode()
    {
        var w = new TlsWriter(256 + Chain.Sum(c => c.Length + 5));
        var msg = w.BeginHandshake(HandshakeType.Certificate);
        w.WriteVector8(Context);
        var list = w.BeginVector(3);
        foreach (var cert in Chain)
        {
            w.WriteVector24(cert);
            w.WriteUInt16(0);
        }
        w.EndVector(list);
        w.EndVector(msg);
        return w.ToArray();
    }
}

/// <summary>CertificateVerify (RFC 8446 §4.4.3).</summary>
internal sealed record CertificateVerify(SignatureScheme Scheme, byte[] Signature)
{
    public static CertificateVerify Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "CertificateVerify");
        var scheme = (SignatureScheme)r.ReadUInt16();
        var signature = r.ReadVector16(1).ToArray();
        r.EnsureEnd();
        return new CertificateVerify(scheme, signature);
    }

    public byte[] Encode()
    {
        var w = new TlsWriter(8 + Signature.Length);
        var msg = w.BeginHandshake(HandshakeType.CertificateVerify);
        w.WriteUInt16((ushort)Scheme);
        w.WriteVector16(Signature);
        w.EndVector(msg);
        return w.ToArray();
    }
}

/// <summary>NewSessionTicket (RFC 8446 §4.6.1).</summary>
internal sealed record NewSessionTicket(uint Lifetime, uint AgeAdd, byte[] Nonce, byte[] Ticket, uint MaxEarlyData)
{
    public static NewSessionTicket Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "NewSessionTicket");
        var lifetime = r.ReadUInt32();
        var ageAdd = r.ReadUInt32();
        var nonce = r.ReadVector8().ToArray();
        var ticket = r.ReadVector16(1).ToArray();
        var extensions = r.ReadSub16();
        r.EnsureEnd();
        uint maxEarly = 0;
        var seen = new HashSet<ExtensionType>();
        while (!extensions.IsEmpty)
        {
            var type = (ExtensionType)extensions.ReadUInt16();
            var data = extensions.ReadSub16();
            if (!seen.Add(type)) throw TlsException.Illegal("duplicate extension in NewSessionTicket");
            if (type == ExtensionType.EarlyData)
            {
                maxEarly = data.ReadUInt32();
                data.EnsureEnd();
            }
        }
        if (lifetime > 604800) throw TlsException.Illegal("ticket lifetime above 7 days");
        return new NewSessionTicket(lifetime, ageAdd, nonce, ticket, maxEarly);
    }
}

/// <summary>Messages whose body is a single value: Finished, KeyUpdate, EndOfEarlyData.</summary>
internal static class SimpleMessages
{
    public static byte[] Finished(ReadOnlySpan<byte> verifyData)
    {
        var w = new TlsWriter(4 + verifyData.Length);
        var msg = w.BeginHandshake(HandshakeType.Finished);
        w.WriteBytes(verifyData);
        w.EndVector(msg);
        return w.ToArray();
    }

    public static byte[] KeyUpdate(bool requestUpdate) => [(byte)HandshakeType.KeyUpdate, 0, 0, 1, requestUpdate ? (byte)1 : (byte)0];

    public static bool ParseKeyUpdate(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "KeyUpdate");
        var v = r.ReadUInt8();
        r.EnsureEnd();
        return v switch
        {
            0 => false,
            1 => true,
            _ => throw TlsException.Illegal("KeyUpdate with an invalid request_update value"),
        };
    }

    public static byte[] EndOfEarlyData() => [(byte)HandshakeType.EndOfEarlyData, 0, 0, 0];

    /// <summary>The synthetic message_hash that replaces ClientHello1 in the transcript after a HelloRetryRequest.</summary>
    public static byte[] MessageHash(ReadOnlySpan<byte> hash)
    {
        var m = new byte[4 + hash.Length];
        m[0] = (byte)HandshakeType.MessageHash;
        m[3] = (byte)hash.Length;
        hash.CopyTo(m.AsSpan(4));
        return m;
    }
}
