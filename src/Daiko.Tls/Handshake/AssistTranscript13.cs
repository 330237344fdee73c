using System.Security.Cryptography;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;

namespace Daiko.Tls.Handshake;

/// <summary>
/// What a home server checks before its card signs a TLS 1.3 client CertificateVerify for someone else's
/// handshake (assist mode). The content a TLS 1.3 CertificateVerify signs carries only a hash of the
/// transcript, so the card must never sign a hash handed to it: the terminal sends the handshake messages
/// themselves (plaintext, each with its header), and they are parsed strictly as exactly one full TLS 1.3
/// handshake — optionally a HelloRetryRequest (after the synthetic message_hash of the first ClientHello),
/// then a ClientHello naming the market and offering no PSK, a ServerHello choosing TLS 1.3 and a suite
/// the engine supports, EncryptedExtensions, a CertificateRequest accepting the scheme, the market's
/// Certificate (validated here for that name), its CertificateVerify (verified with that certificate
/// over the transcript up to it), its Finished (of the suite's hash length: it cannot be checked without
/// the handshake secret, and need not be — the market's signature already binds the transcript to its
/// key), and the owner's own chain as the client's Certificate — and nothing else. The content to sign
/// is then computed here from those messages.
/// </summary>
public static class AssistTranscript13
{
    private static readonly HandshakeType[] FullHandshake =
    [
        HandshakeType.ClientHello, HandshakeType.ServerHello, HandshakeType.EncryptedExtensions, HandshakeType.CertificateRequest,
        HandshakeType.Certificate, HandshakeType.CertificateVerify, HandshakeType.Finished, HandshakeType.Certificate,
    ];

    /// <summary>
    /// The RFC 8446 §4.4.3 content (64 spaces, "TLS 1.3, client CertificateVerify", 0, the transcript hash)
    /// to sign with <paramref name="scheme"/> for <paramref name="transcript"/>, or null and why not.
    /// </summary>
    /// <param name="transcript">The handshake messages from the first ClientHello (or message_hash) through the client's Certificate.</param>
    /// <param name="ownerChain">The chain the client's Certificate must carry, byte for byte.</param>
    /// <param name="marketValidator">Judges the market's chain for the name the ClientHello gives.</param>
    public static async ValueTask<(byte[]? Content, string? Refusal)> CheckAsync(ReadOnlyMemory<byte> transcript, SignatureScheme scheme,
        IReadOnlyList<byte[]> ownerChain, IServerCertificateValidator marketValidator, CancellationToken cancellationToken)
    {
        try
        {
            var messages = HandshakeMessages.Split(transcript.Span, FullHandshake.Length + 2);
            var retried = messages.Count > 0 && messages[0].Type == HandshakeType.MessageHash;
            HandshakeType[] expected = retried ? [HandshakeType.MessageHash, HandshakeType.ServerHello, .. FullHandshake] : FullHandshake;
            if (!messages.Select(m => m.Type).SequenceEqual(expected)) return Refused("not one full TLS 1.3 handshake with a client certificate");
            ReadOnlyMemory<byte> Body(int i) => transcript[(messages[i].Start + 4)..messages[i].End];
            var first = retried ? 2 : 0;

            var offer = ClientHelloOffer.Parse(Body(first).Span);
            if (!offer.OffersTls13) return Refused("the ClientHello does not offer TLS 1.3");
            if (offer.Extensions.Contains(ExtensionType.PreSharedKey) || offer.Extensions.Contains(ExtensionType.EarlyData))
                return Refused("the ClientHello offers a pre_shared_key or early data: only a full handshake is signed for");
            if (offer.ServerName is not { } host) return Refused("the ClientHello names no market (server_name)");

            var hello = ServerHello.Parse(Body(first + 1).Span);
            if (hello.IsHelloRetryRequest || hello.SelectedIdentity is not null) return Refused("the ServerHello is not that of a full handshake");
            if (CipherSuiteInfo.Find(hello.CipherSuite) is not { } suite || !offer.Suites.Contains(hello.CipherSuite))
                return Refused("the ServerHello chose a suite that was not offered or that the engine does not support");
            if (!hello.SessionIdEcho.AsSpan().SequenceEqual(offer.SessionId)) return Refused("the ServerHello does not echo the ClientHello's session id");
            if (retried)
            {
                var retry = ServerHello.Parse(Body(1).Span);
                if (!retry.IsHelloRetryRequest || retry.CipherSuite != hello.CipherSuite) return Refused("the HelloRetryRequest is not one for this handshake's suite");
                if (Body(0).Length != suite.HashLength) return Refused("the message_hash is not a hash of the suite's length");
            }

            var extensions = EncryptedExtensions.Parse(Body(first + 2).Span);
            if (extensions.EarlyDataAccepted) return Refused("the EncryptedExtensions accept early data");

            var request = CertificateRequest.Parse(Body(first + 3).Span);
            if (request.Context.Length != 0) return Refused("the handshake's CertificateRequest has a non-empty context");
            if (!SignatureVerifier.AllowedInCertificateVerify(scheme) || !request.SignatureSchemes.Contains(scheme))
                return Refused("the market did not ask for this signature scheme, or it is outside the profile");

            var marketCertificate = CertificateMessage.Parse(Body(first + 4).Span);
            if (marketCertificate.Context.Length != 0) return Refused("the market's Certificate has a non-empty context");
            if (marketCertificate.Chain.Count == 0) return Refused("the market sent no certificate");
            var verdict = await marketValidator.ValidateAsync(host, marketCertificate.Chain, cancellationToken);
            if (!verdict.Trusted) return Refused($"the market's certificate is not trusted for {host}: {verdict.Reason}");

            var verify = CertificateVerify.Parse(Body(first + 5).Span);
            var leaf = ParsedCertificates.Get(marketCertificate.Chain[0]);
            var serverContent = SignatureVerifier.Content(server: true, suite.HashData(transcript.Span[..messages[first + 4].End]));
            if (!offer.SignatureSchemes.Contains(verify.Scheme) || !SignatureVerifier.AllowedInCertificateVerify(verify.Scheme)
                || !SignatureVerifier.Verify(leaf, verify.Scheme, serverContent, verify.Signature))
            {
                return Refused("the market's CertificateVerify signature does not verify");
            }

            if (Body(first + 6).Length != suite.HashLength) return Refused("the market's Finished is not of the suite's hash length");

            var clientCertificate = CertificateMessage.Parse(Body(first + 7).Span);
            if (!clientCertificate.Context.AsSpan().SequenceEqual(request.Context)) return Refused("the client Certificate does not answer the market's request");
            if (!HandshakeMessages.SameChain(clientCertificate.Chain, ownerChain)) return Refused("the client Certificate is not the owner's chain");

            return (SignatureVerifier.Content(server: false, suite.HashData(transcript.Span)), null);
        }
        catch (Exception e) when (e is TlsException or CryptographicException or PlatformNotSupportedException)
        {
            return Refused($"not a well-formed TLS 1.3 handshake: {e.Message}");
        }
    }

    private static (byte[]? Content, string? Refusal) Refused(string why) => (null, why);

    private static readonly byte[] ClientContentPrefix = SignatureVerifier.Content(server: false, []);

    /// <summary>Whether <paramref name="content"/> has the shape of TLS 1.3 client CertificateVerify content (its context string), as opposed to a TLS 1.2 transcript.</summary>
    public static bool IsClientVerifyContent(ReadOnlySpan<byte> content) => content.StartsWith(ClientContentPrefix);
}
