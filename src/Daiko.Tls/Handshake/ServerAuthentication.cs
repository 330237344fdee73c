using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Tls.Crypto;
using Daiko.Tls.Messages;

namespace Daiko.Tls.Handshake;

/// <summary>
/// Proof that the server authenticated: obtainable only by verifying its CertificateVerify over the
/// transcript with the validated leaf's key, or by resuming a PSK that came from such a handshake.
/// The Finished state takes one, so a handshake cannot complete without it.
/// </summary>
internal sealed partial class ServerAuthentication
{
    private ServerAuthentication(bool resumed) => Resumed = resumed;

    public bool Resumed { get; }

    public static ServerAuthentication FromResumption() => new(resumed: true);

    public static ServerAuthentication Verify(X509Certificate2 leaf, CertificateVerify verify, IReadOnlyList<SignatureScheme> offered, ReadOnlySpan<byte> transcriptHash, HandshakeContext context)
    {
        if (!offered.Contains(verify.Scheme) || !SignatureVerifier.AllowedInCertificateVerify(verify.Scheme))
        {
            throw TlsException.Illegal($"the server signed with {verify.Scheme}, which the client did not offer");
        }
        var content = SignatureVerifier.Content(server: true, transcriptHash);
        context.AddPublicKeyOperation();
        if (!SignatureVerifier.Verify(leaf, verify.Scheme, content, verify.Signature))
        {
            throw new TlsException(TlsError.VerificationFailed, AlertDescription.DecryptError, "the server's CertificateVerify signature does not verify");
        }
        return new ServerAuthentication(resumed: false);
    }

    public static void CheckFinished(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> received)
    {
        if (expected.Length != received.Length || !CryptographicOperations.FixedTimeEquals(expected, received))
        {
            throw new TlsException(TlsError.VerificationFailed, AlertDescription.DecryptError, "the server's Finished does not verify");
        }
    }
}
