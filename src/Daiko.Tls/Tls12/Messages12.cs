using Daiko.Tls.Messages;

namespace Daiko.Tls.Tls12;

/// <summary>TLS 1.2 Certificate (RFC 5246 §7.4.2): a chain of DER certificates, leaf first, with no context or extensions.</summary>
internal sealed record Certificate12(IReadOnlyList<byte[]> Chain)
{
    public static Certificate12 Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "Certificate");
        var list = r.ReadSub24();
        r.EnsureEnd();
        var chain = new List<byte[]>();
        while (!list.IsEmpty) chain.Add(list.ReadVector24(1).ToArray());
        return new Certificate12(chain);
    }

    public byte[] Encode()
    {
        var w = new TlsWriter(256 + Chain.Sum(c => c.Length + 3));
        var msg = w.BeginHandshake(HandshakeType.Certificate);
        var list = w.BeginVector(3);
        foreach (var cert in Chain) w.WriteVector24(cert);
        w.EndVector(list);
        w.EndVector(msg);
        return w.ToArray();
    }
}

/// <summary>
/// ServerKeyExchange for ECDHE (RFC 8422 §5.4): named_curve parameters and the server's point, signed
/// over client_random + server_random + params.
/// </summary>
internal sealed record ServerKeyExchange12(NamedGroup Group, byte[] PublicKey, byte[] Parameters, SignatureScheme Scheme, byte[] Signature)
{
    private const byte NamedCurve = 3;

    public static ServerKeyExchange12 Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "ServerKeyExchange");
        var curveType = r.ReadUInt8();
        if (curveType != NamedCurve) throw TlsException.Illegal("the server's ECDHE parameters are not a named curve");
        var group = (NamedGroup)r.ReadUInt16();
        var point = r.ReadVector8(1).ToArray();
        var parameters = body[..(3 + 1 + point.Length)].ToArray();
        var scheme = (SignatureScheme)r.ReadUInt16();
        var signature = r.ReadVector16(1).ToArray();
        r.EnsureEnd();
        return new ServerKeyExchange12(group, point, parameters, scheme, signature);
    }

    /// <summary>What the server signed: client_random + server_random + ServerECDHParams.</summary>
    public byte[] SignedContent(ReadOnlySpan<byte> clientRandom, ReadOnlySpan<byte> serverRandom) => [.. clientRandom, .. serverRandom, .. Parameters];
}

/// <summary>TLS 1.2 CertificateRequest (RFC 5246 §7.4.4): certificate types, signature algorithms, acceptable CAs.</summary>
internal sealed record CertificateRequest12(byte[] CertificateTypes, IReadOnlyList<SignatureScheme> SignatureSchemes, IReadOnlyList<byte[]> CertificateAuthorities)
{
    public const byte RsaSign = 1;
    public const byte EcdsaSign = 64;

    public static CertificateRequest12 Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "CertificateRequest");
        var types = r.ReadVector8(1).ToArray();
        var schemeList = r.ReadSub16(2);
        var schemes = new List<SignatureScheme>();
        while (!schemeList.IsEmpty) schemes.Add((SignatureScheme)schemeList.ReadUInt16());
        var caList = r.ReadSub16();
        var cas = new List<byte[]>();
        while (!caList.IsEmpty) cas.Add(caList.ReadVector16(1).ToArray());
        r.EnsureEnd();
        return new CertificateRequest12(types, schemes, cas);
    }

    /// <summary>Whether a certificate whose key signs with <paramref name="scheme"/> is of a type the server asked for.</summary>
    public bool AcceptsKeyFor(SignatureScheme scheme) =>
        CertificateTypes.Contains(scheme is SignatureScheme.EcdsaSecp256r1Sha256 or SignatureScheme.EcdsaSecp384r1Sha384 or SignatureScheme.EcdsaSecp521r1Sha512 ? EcdsaSign : RsaSign);
}

/// <summary>NewSessionTicket of RFC 5077 §3.3: a lifetime hint and an opaque ticket (empty: none issued).</summary>
internal sealed record NewSessionTicket12(uint LifetimeHint, byte[] Ticket)
{
    public static NewSessionTicket12 Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "NewSessionTicket");
        var lifetime = r.ReadUInt32();
        var ticket = r.ReadVector16().ToArray();
        r.EnsureEnd();
        return new NewSessionTicket12(lifetime, ticket);
    }
}

/// <summary>Client messages of TLS 1.2 that have a single field: ClientKeyExchange (ECDHE point), change_cipher_spec.</summary>
internal static class SimpleMessages12
{
    public static byte[] ClientKeyExchange(ReadOnlySpan<byte> publicPoint)
    {
        var w = new TlsWriter(8 + publicPoint.Length);
        var msg = w.BeginHandshake(HandshakeType.ClientKeyExchange);
        w.WriteVector8(publicPoint);
        w.EndVector(msg);
        return w.ToArray();
    }

    public static byte[] ChangeCipherSpec => [1];

    public static void EnsureEmpty(ReadOnlySpan<byte> body, string what)
    {
        if (!body.IsEmpty) throw TlsException.Decode(what + " (trailing bytes)");
    }
}
