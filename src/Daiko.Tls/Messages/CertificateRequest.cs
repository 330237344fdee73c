namespace Daiko.Tls.Messages;

/// <summary>CertificateRequest (RFC 8446 §4.3.2).</summary>
internal sealed record CertificateRequest(byte[] Context, IReadOnlyList<SignatureScheme> SignatureSchemes, IReadOnlyList<byte[]> CertificateAuthorities)
{
    public static CertificateRequest Parse(ReadOnlySpan<byte> body)
    {
        var r = new TlsReader(body, "CertificateRequest");
        var context = r.ReadVector8().ToArray();
        var extensions = r.ReadSub16();
        r.EnsureEnd();
        var schemes = new List<SignatureScheme>();
        var cas = new List<byte[]>();
        var sawSchemes = false;
        var seen = new HashSet<ExtensionType>();
        while (!extensions.IsEmpty)
        {
            var type = (ExtensionType)extensions.ReadUInt16();
            var data = extensions.ReadSub16();
            if (!seen.Add(type)) throw TlsException.Illegal("duplicate extension in CertificateRequest");
            switch (type)
            {
                case ExtensionType.SignatureAlgorithms:
                {
                    sawSchemes = true;
                    var list = data.ReadSub16(2);
                    while (!list.IsEmpty) schemes.Add((SignatureScheme)list.ReadUInt16());
                    data.EnsureEnd();
                    break;
                }
                case ExtensionType.CertificateAuthorities:
                {
                    var list = data.ReadSub16(3);
                    while (!list.IsEmpty) cas.Add(list.ReadVector16(1).ToArray());
                    data.EnsureEnd();
                    break;
                }
                default:
                    while (!data.IsEmpty) data.ReadUInt8();
                    break;
            }
        }
        if (!sawSchemes) throw new TlsException(TlsError.IllegalParameter, AlertDescription.MissingExtension, "CertificateRequest without signature_algorithms");
        return new CertificateRequest(context, schemes, cas);
    }
}
