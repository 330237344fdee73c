using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Daiko.Tls.Crypto;

/// <summary>CertificateVerify content and signature checks (RFC 8446 §4.4.3).</summary>
internal static class SignatureVerifier
{
    public static readonly SignatureScheme[] Supported =
    [
        SignatureScheme.EcdsaSecp256r1Sha256,
        SignatureScheme.EcdsaSecp384r1Sha384,
        SignatureScheme.RsaPssRsaeSha256,
        SignatureScheme.RsaPssRsaeSha384,
        SignatureScheme.RsaPssRsaeSha512,
        SignatureScheme.RsaPssPssSha256,
        SignatureScheme.RsaPssPssSha384,
        SignatureScheme.RsaPssPssSha512,
        SignatureScheme.RsaPkcs1Sha256,
        SignatureScheme.RsaPkcs1Sha384,
        SignatureScheme.RsaPkcs1Sha512,
    ];

    /// <summary>Schemes allowed in CertificateVerify (PKCS#1 v1.5 is only for certificates).</summary>
    public static bool AllowedInCertificateVerify(SignatureScheme s) =>
        s is not (SignatureScheme.RsaPkcs1Sha256 or SignatureScheme.RsaPkcs1Sha384 or SignatureScheme.RsaPkcs1Sha512) && Supported.Contains(s);

    public static byte[] Content(bool server, ReadOnlySpan<byte> transcriptHash)
    {
        var context = server ? "TLS 1.3, server CertificateVerify" : "TLS 1.3, client CertificateVerify";
        var content = new byte[64 + context.Length + 1 + transcriptHash.Length];
        content.AsSpan(0, 64).Fill(0x20);
        Encoding.ASCII.GetBytes(context, content.AsSpan(64));
        content[64 + context.Length] = 0;
        transcriptHash.CopyTo(content.AsSpan(64 + context.Length + 1));
        return content;
    }

    /// <summary>
    /// Verifies <paramref name="signature"/> over <paramref name="content"/> with the certificate's key.
    /// RSA schemes need the key type they name (<see cref="RsaPublicKeys"/>). In TLS 1.3 an ECDSA scheme
    /// also names the curve; in TLS 1.2 (<paramref name="tls12"/>) it names only the hash.
    /// </summary>
    public static bool Verify(X509Certificate2 certificate, SignatureScheme scheme, ReadOnlySpan<byte> content, ReadOnlySpan<byte> signature, bool tls12 = false)
    {
        try
        {
            switch (scheme)
            {
                case SignatureScheme.EcdsaSecp256r1Sha256:
                case SignatureScheme.EcdsaSecp384r1Sha384:
                {
                    using var ec = certificate.GetECDsaPublicKey();
                    if (ec is null) return false;
                    var expected = scheme == SignatureScheme.EcdsaSecp256r1Sha256 ? 256 : 384;
                    if (!tls12 && ec.KeySize != expected) return false;
                    return ec.VerifyData(content, signature, HashOf(scheme), DSASignatureFormat.Rfc3279DerSequence);
                }
                case SignatureScheme.RsaPssRsaeSha256 or SignatureScheme.RsaPssRsaeSha384 or SignatureScheme.RsaPssRsaeSha512
                    or SignatureScheme.RsaPssPssSha256 or SignatureScheme.RsaPssPssSha384 or SignatureScheme.RsaPssPssSha512:
                {
                    using var rsa = RsaPublicKeys.ForScheme(certificate, scheme);
                    if (rsa is null) return false;
                    return rsa.VerifyData(content, signature, HashOf(scheme), RSASignaturePadding.Pss);
                }
                case SignatureScheme.RsaPkcs1Sha256 or SignatureScheme.RsaPkcs1Sha384 or SignatureScheme.RsaPkcs1Sha512 when tls12:
                {
                    using var rsa = RsaPublicKeys.ForScheme(certificate, scheme);
                    if (rsa is null) return false;
                    return rsa.VerifyData(content, signature, HashOf(scheme), RSASignaturePadding.Pkcs1);
                }
                default:
                    return false;
            }
        }
        catch (Exception e) when (e is CryptographicException or PlatformNotSupportedException)
        {
            // PlatformNotSupportedException: a key on a curve this platform lacks. Either way the key cannot verify.
            return false;
        }
    }

    public static HashAlgorithmName HashOf(SignatureScheme scheme) => scheme switch
    {
        SignatureScheme.EcdsaSecp256r1Sha256 or SignatureScheme.RsaPssRsaeSha256 or SignatureScheme.RsaPssPssSha256 or SignatureScheme.RsaPkcs1Sha256 => HashAlgorithmName.SHA256,
        SignatureScheme.EcdsaSecp384r1Sha384 or SignatureScheme.RsaPssRsaeSha384 or SignatureScheme.RsaPssPssSha384 or SignatureScheme.RsaPkcs1Sha384 => HashAlgorithmName.SHA384,
        _ => HashAlgorithmName.SHA512,
    };
}
