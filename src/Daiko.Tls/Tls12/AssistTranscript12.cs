using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;

namespace Daiko.Tls.Tls12;

/// <summary>
/// What a home server checks before its card signs a TLS 1.2 client CertificateVerify for someone else's
/// handshake (assist mode). A TLS 1.2 CertificateVerify signs the handshake messages themselves, with no
/// context string, so the card must never sign bytes or a hash handed to it: the whole transcript is
/// parsed strictly as exactly one full TLS 1.2 handshake of the supported profile — ClientHello naming
/// the market, ServerHello, the market's Certificate (validated here for that name), a
/// ServerKeyExchange whose signature verifies with that certificate over both randoms, a
/// CertificateRequest accepting the scheme, ServerHelloDone, the owner's own certificate chain and a
/// ClientKeyExchange for the market's group — and nothing else. Only then is it signed.
/// </summary>
public static class AssistTranscript12
{
    /// <summary>Returns null when <paramref name="transcript"/> may be signed with <paramref name="scheme"/>; otherwise why not.</summary>
    public static async ValueTask<string?> CheckAsync(ReadOnlyMemory<byte> transcript, SignatureScheme scheme, IReadOnlyList<byte[]> ownerChain,
        IServerCertificateValidator marketValidator, CancellationToken cancellationToken)
    {
        try
        {
            var messages = HandshakeMessages.Split(transcript.Span, 8).Select(m => (m.Type, Body: transcript[(m.Start + 4)..m.End].ToArray())).ToList();
            HandshakeType[] expected =
            [
                HandshakeType.ClientHello, HandshakeType.ServerHello, HandshakeType.Certificate, HandshakeType.ServerKeyExchange,
                HandshakeType.CertificateRequest, HandshakeType.ServerHelloDone, HandshakeType.Certificate, HandshakeType.ClientKeyExchange,
            ];
            if (!messages.Select(m => m.Type).SequenceEqual(expected)) return "not one full TLS 1.2 handshake with a client certificate";
            var offer = ClientHelloOffer.Parse(messages[0].Body);
            var (clientRandom, host, suites) = (offer.Random, offer.ServerName, offer.Suites);
            if (!offer.Extensions.Contains(ExtensionType.ExtendedMasterSecret)) return "the ClientHello does not offer Extended Master Secret";
            if (host is null) return "the ClientHello names no market (server_name)";
            var hello = ServerHello12.Parse(messages[1].Body);
            // As the engine itself aborts such a handshake (RFC 8446 §4.1.3): a 1.3-capable client was moved down to 1.2.
            if (offer.OffersTls13 && hello.CarriesDowngradeSentinel) return "the ServerHello carries the downgrade sentinel of a server that speaks TLS 1.3";
            if (CipherSuiteInfo.FindTls12(hello.CipherSuite) is not { } suite || !suites.Contains(hello.CipherSuite)) return "the ServerHello chose a suite outside the profile";
            if (!hello.ExtendedMasterSecret || hello.RenegotiationInfo is not { Length: 0 }) return "the ServerHello lacks Extended Master Secret or secure renegotiation";
            var marketChain = Certificate12.Parse(messages[2].Body).Chain;
            if (marketChain.Count == 0) return "the market sent no certificate";
            var verdict = await marketValidator.ValidateAsync(host, marketChain, cancellationToken);
            if (!verdict.Trusted) return $"the market's certificate is not trusted for {host}: {verdict.Reason}";
            var exchange = ServerKeyExchange12.Parse(messages[3].Body);
            {
                var leaf = ParsedCertificates.Get(marketChain[0]);
                var ecdsa = exchange.Scheme is SignatureScheme.EcdsaSecp256r1Sha256 or SignatureScheme.EcdsaSecp384r1Sha384;
                // The scheme must be one the ClientHello offered (RFC 5246 §7.4.1.4.1), as the engine requires of its own handshakes.
                if (!offer.SignatureSchemes.Contains(exchange.Scheme)) return "the market's ServerKeyExchange is signed with a scheme the ClientHello did not offer";
                if (!KeyShare.IsSupported(exchange.Group) || ecdsa != suite.AuthenticatesWithEcdsa || !SignatureVerifier.Supported.Contains(exchange.Scheme)
                    || !SignatureVerifier.Verify(leaf, exchange.Scheme, exchange.SignedContent(clientRandom, hello.Random), exchange.Signature, tls12: true))
                {
                    return "the market's ServerKeyExchange signature does not verify";
                }
            }
            var request = CertificateRequest12.Parse(messages[4].Body);
            if (!SignatureVerifier.Supported.Contains(scheme) || !request.SignatureSchemes.Contains(scheme) || !request.AcceptsKeyFor(scheme))
                return "the market did not ask for this signature scheme, or it is outside the profile";
            SimpleMessages12.EnsureEmpty(messages[5].Body, "ServerHelloDone");
            var clientChain = Certificate12.Parse(messages[6].Body).Chain;
            if (!HandshakeMessages.SameChain(clientChain, ownerChain))
                return "the client Certificate is not the owner's chain";
            var r = new TlsReader(messages[7].Body, "ClientKeyExchange");
            var point = r.ReadVector8(1);
            r.EnsureEnd();
            var pointLength = exchange.Group switch { NamedGroup.X25519 => 32, NamedGroup.Secp256r1 => 65, _ => 97 };
            if (point.Length != pointLength) return "the ClientKeyExchange is not a key for the market's group";
            return null;
        }
        catch (Exception e) when (e is TlsException or CryptographicException or PlatformNotSupportedException)
        {
            return $"not a well-formed TLS 1.2 handshake: {e.Message}";
        }
    }
}
