using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Tls.Crypto;

namespace Daiko.Tls.Tests.Crypto;

/// <summary>
/// Offer only what can be verified, verify what is offered: each RSA scheme needs the key type it
/// names (rsaEncryption for rsa_pss_rsae and PKCS#1, RSASSA-PSS for rsa_pss_pss), RSASSA-PSS key
/// parameters bind the hash, and PKCS#1 v1.5 is accepted only in TLS 1.2.
/// </summary>
public sealed class SignatureVerifierKeyTypeTests
{
    private static readonly byte[] Content = "content signed by the server"u8.ToArray();

    private static X509Certificate2 CertificateFor(PublicKey key)
    {
        using var issuer = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName("CN=server"), key, HashAlgorithmName.SHA256);
        var now = DateTimeOffset.UtcNow;
        return request.Create(new X500DistinguishedName("CN=issuer"), X509SignatureGenerator.CreateForECDsa(issuer), now.AddHours(-1), now.AddDays(1), [1, 2, 3]);
    }

    private static PublicKey PssKey(RSA rsa, byte[]? parameters = null) =>
        new(new Oid(RsaPublicKeys.RsaPssOid), parameters is null ? null : new AsnEncodedData(parameters), new AsnEncodedData(rsa.ExportRSAPublicKey()));

    private static byte[] PssParameters(string hashOid)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0, true)))
            using (w.PushSequence())
            {
                w.WriteObjectIdentifier(hashOid);
            }
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 1, true)))
            using (w.PushSequence())
            {
                w.WriteObjectIdentifier("1.2.840.113549.1.1.8");
                using (w.PushSequence()) w.WriteObjectIdentifier(hashOid);
            }
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 2, true))) w.WriteInteger(32);
        }
        return w.Encode();
    }

    [Fact]
    public void Accepts_RsaPssPss_FromAnRsaPssKey_AndRefuses_RsaPssRsae()
    {
        using var rsa = RSA.Create(2048);
        using var certificate = CertificateFor(PssKey(rsa));
        Assert.Null(certificate.GetRSAPublicKey());
        var signature = rsa.SignData(Content, HashAlgorithmName.SHA256, RSASignaturePadding.Pss);

        Assert.True(SignatureVerifier.Verify(certificate, SignatureScheme.RsaPssPssSha256, Content, signature));
        Assert.False(SignatureVerifier.Verify(certificate, SignatureScheme.RsaPssRsaeSha256, Content, signature));
    }

    [Fact]
    public void Refuses_RsaPssPss_FromAnRsaEncryptionKey()
    {
        using var rsa = RSA.Create(2048);
        using var certificate = CertificateFor(new PublicKey(rsa));
        var signature = rsa.SignData(Content, HashAlgorithmName.SHA256, RSASignaturePadding.Pss);

        Assert.True(SignatureVerifier.Verify(certificate, SignatureScheme.RsaPssRsaeSha256, Content, signature));
        Assert.False(SignatureVerifier.Verify(certificate, SignatureScheme.RsaPssPssSha256, Content, signature));
    }

    [Fact]
    public void RsaPssKeyParameters_BindTheHash()
    {
        using var rsa = RSA.Create(2048);
        using var certificate = CertificateFor(PssKey(rsa, PssParameters("2.16.840.1.101.3.4.2.2")));
        var sha384 = rsa.SignData(Content, HashAlgorithmName.SHA384, RSASignaturePadding.Pss);
        var sha256 = rsa.SignData(Content, HashAlgorithmName.SHA256, RSASignaturePadding.Pss);

        Assert.True(SignatureVerifier.Verify(certificate, SignatureScheme.RsaPssPssSha384, Content, sha384));
        Assert.False(SignatureVerifier.Verify(certificate, SignatureScheme.RsaPssPssSha256, Content, sha256));
    }

    [Fact]
    public void Pkcs1_VerifiesOnlyInTls12()
    {
        using var rsa = RSA.Create(2048);
        using var certificate = CertificateFor(new PublicKey(rsa));
        var signature = rsa.SignData(Content, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);

        Assert.False(SignatureVerifier.Verify(certificate, SignatureScheme.RsaPkcs1Sha256, Content, signature));
        Assert.True(SignatureVerifier.Verify(certificate, SignatureScheme.RsaPkcs1Sha256, Content, signature, tls12: true));
    }

    [Fact]
    public void Ecdsa_SchemeNamesTheCurveInTls13_OnlyTheHashInTls12()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        using var certificate = CertificateFor(new PublicKey(ec));
        var signature = ec.SignData(Content, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

        Assert.False(SignatureVerifier.Verify(certificate, SignatureScheme.EcdsaSecp256r1Sha256, Content, signature));
        Assert.True(SignatureVerifier.Verify(certificate, SignatureScheme.EcdsaSecp256r1Sha256, Content, signature, tls12: true));
    }

    /// <summary>
    /// A key on a curve this platform lacks (an id-ecPublicKey naming an unknown curve OID) fails
    /// verification, as any key that cannot verify does; it does not escape as an exception that carries
    /// no alert. Which exception the platform throws for it varies: OpenSSL 3 on Linux refuses this one
    /// with a CryptographicException, while .NET's own key import throws PlatformNotSupportedException
    /// for a curve it cannot use (see UnsupportedCurveKeyTests); both are caught.
    /// </summary>
    [Fact]
    public void Ecdsa_KeyOnACurveThePlatformLacks_FailsVerification()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var point = ec.ExportParameters(false).Q;
        var curve = new AsnWriter(AsnEncodingRules.DER);
        curve.WriteObjectIdentifier("1.2.840.10045.19.1.7");
        var key = new PublicKey(new Oid("1.2.840.10045.2.1"), new AsnEncodedData(curve.Encode()), new AsnEncodedData([4, .. point.X!, .. point.Y!]));
        using var certificate = CertificateFor(key);
        Assert.ThrowsAny<Exception>(() => certificate.GetECDsaPublicKey());
        var signature = ec.SignData(Content, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

        Assert.False(SignatureVerifier.Verify(certificate, SignatureScheme.EcdsaSecp256r1Sha256, Content, signature));
        Assert.False(SignatureVerifier.Verify(certificate, SignatureScheme.EcdsaSecp256r1Sha256, Content, signature, tls12: true));
    }
}
