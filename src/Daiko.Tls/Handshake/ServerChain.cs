using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Daiko.Tls.Handshake;

/// <summary>The server's certificate chain, checked by the configured validator (both versions).</summary>
internal static class ServerChain
{
    /// <summary>
    /// Validates <paramref name="chain"/> and returns its parsed leaf, shared through
    /// <see cref="Crypto.ParsedCertificates"/> (do not dispose it); a rejection carries the alert for its cause.
    /// </summary>
    public static async ValueTask<X509Certificate2> ValidateAsync(HandshakeContext c, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
    {
        if (chain.Count == 0) throw new TlsException(TlsError.CertificateRejected, AlertDescription.DecodeError, "the server sent an empty certificate chain");
        X509Certificate2 leaf;
        try
        {
            leaf = Crypto.ParsedCertificates.Get(chain[0]);
        }
        catch (CryptographicException e)
        {
            throw new TlsException(TlsError.CertificateRejected, AlertDescription.BadCertificate, "the server's certificate could not be parsed", e);
        }
        if (!c.Options.InsecureSkipValidation)
        {
            var validator = c.Options.CertificateValidator
                ?? throw new InvalidOperationException("no certificate validator is configured");
            var verdict = await validator.ValidateAsync(c.Options.ServerName, chain, cancellationToken);
            if (!verdict.Trusted)
            {
                var alert = verdict.Problem switch
                {
                    CertificateProblem.UntrustedRoot => AlertDescription.UnknownCa,
                    CertificateProblem.Expired => AlertDescription.CertificateExpired,
                    CertificateProblem.Revoked => AlertDescription.CertificateRevoked,
                    _ => AlertDescription.BadCertificate,
                };
                throw new TlsException(TlsError.CertificateRejected, alert, verdict.Reason ?? "the server certificate was rejected");
            }
        }
        c.ServerChain = chain;
        return leaf;
    }
}
