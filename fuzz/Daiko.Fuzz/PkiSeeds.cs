using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Daiko.Tls;
using Daiko.Tls.Crypto;

namespace Daiko.Fuzz;

/// <summary>Certificates, keys and PKCS#12 files as the product imports them, each behind the pki target's mode byte.</summary>
internal static class PkiSeeds
{
    public static byte[] SelfSigned(ECDsa key)
    {
        var request = new CertificateRequest("CN=market.example", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("market.example");
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UnixEpoch.AddYears(55), DateTimeOffset.UnixEpoch.AddYears(57));
        return certificate.RawData;
    }

    public static IEnumerable<byte[]> All()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var ec384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        using var rsa = RSA.Create(2048);
        var ecCert = SelfSigned(ec);
        var ec384Cert = SelfSigned(ec384);
        var rsaRequest = new CertificateRequest("CN=bank.example", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pss);
        using var rsaCertificate = rsaRequest.CreateSelfSigned(DateTimeOffset.UnixEpoch.AddYears(55), DateTimeOffset.UnixEpoch.AddYears(57));
        var rsaCert = rsaCertificate.RawData;

        yield return [0, .. ecCert];
        yield return [0, .. ec384Cert, .. ec384.SignData("content"u8, HashAlgorithmName.SHA384)];
        yield return [0, .. rsaCert];

        var pem = PemEncoding.WriteString("CERTIFICATE", ecCert) + "\n" + PemEncoding.WriteString("CERTIFICATE", rsaCert) + "\n";
        yield return [1, .. Encoding.ASCII.GetBytes(pem)];

        yield return [2, .. Encoding.ASCII.GetBytes(ec.ExportECPrivateKeyPem())];
        yield return [2, .. Encoding.ASCII.GetBytes(ec384.ExportPkcs8PrivateKeyPem())];
        yield return [2, .. Encoding.ASCII.GetBytes(rsa.ExportRSAPrivateKeyPem())];

        yield return [3, .. ec.ExportSubjectPublicKeyInfo()];
        yield return [3, .. ec.ExportPkcs8PrivateKey()];
        yield return [3, .. rsa.ExportSubjectPublicKeyInfo()];

        var pbe = new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 100);
        using (var withKey = X509CertificateLoader.LoadCertificate(ecCert).CopyWithPrivateKey(ec))
            yield return [4, .. withKey.ExportPkcs12(pbe, PkiTarget.Pkcs12Password)];
        yield return [4, .. rsaCertificate.ExportPkcs12(new PbeParameters(PbeEncryptionAlgorithm.TripleDes3KeyPkcs12, HashAlgorithmName.SHA1, 100), PkiTarget.Pkcs12Password)];

        foreach (var hash in new[] { "2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.3" })
            yield return [5, .. PssParameters(hash, 32)];
        yield return [5, 0x05, 0x00];

        foreach (var (selector, group) in new[] { (0, NamedGroup.X25519), (1, NamedGroup.Secp256r1), (2, NamedGroup.Secp384r1) })
        {
            using var share = KeyShare.Create(group);
            yield return [6, (byte)selector, .. share.PublicKey];
        }
    }

    /// <summary>RSASSA-PSS-params naming one hash for the digest and MGF1 (RFC 4055).</summary>
    private static byte[] PssParameters(string hashOid, int salt)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0)))
                WriteAlgorithm(w, hashOid);
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 1)))
            using (w.PushSequence())
            {
                w.WriteObjectIdentifier("1.2.840.113549.1.1.8");
                WriteAlgorithm(w, hashOid);
            }
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 2)))
                w.WriteInteger(salt);
        }
        return w.Encode();

        static void WriteAlgorithm(AsnWriter w, string oid)
        {
            using (w.PushSequence())
            {
                w.WriteObjectIdentifier(oid);
                w.WriteNull();
            }
        }
    }
}
