using System.Security.Cryptography.X509Certificates;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;

namespace Daiko.Tls.Handshake;

internal sealed partial class ServerAuthentication
{
    /// <summary>
    /// TLS 1.2: the ServerKeyExchange signature over both randoms and the ECDHE parameters, made with
    /// the validated leaf's key, with a scheme the client offered that fits the suite's key type
    /// (ECDSA for ECDHE_ECDSA; RSA PKCS#1 or PSS for ECDHE_RSA).
    /// </summary>
    public static ServerAuthentication VerifyTls12(X509Certificate2 leaf, CipherSuiteInfo suite, SignatureScheme scheme, ReadOnlySpan<byte> content,
        ReadOnlySpan<byte> signature, HandshakeContext context)
    {
        var ecdsa = scheme is SignatureScheme.EcdsaSecp256r1Sha256 or SignatureScheme.EcdsaSecp384r1Sha384;
        if (!SignatureVerifier.Supported.Contains(scheme) || ecdsa != suite.AuthenticatesWithEcdsa)
        {
            throw TlsException.Illegal($"the server signed its key exchange with {scheme}, which the client did not offer for this suite");
        }
        context.AddPublicKeyOperation();
        if (!SignatureVerifier.Verify(leaf, scheme, content, signature, tls12: true))
        {
            throw new TlsException(TlsError.VerificationFailed, AlertDescription.DecryptError, "the server's ServerKeyExchange signature does not verify");
        }
        return new ServerAuthentication(resumed: false);
    }
}
