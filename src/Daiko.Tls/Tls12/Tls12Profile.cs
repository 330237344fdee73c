using Daiko.Tls.Handshake;
using Daiko.Tls.Records;

namespace Daiko.Tls.Tls12;

/// <summary>
/// Where TLS 1.2 meets the TLS 1.3 engine: the version the ServerHello chose, and a plain account of
/// the profile when a server refuses the ClientHello.
/// </summary>
internal static class Tls12Profile
{
    public const string Description = "ECDHE (X25519, P-256, P-384) with AES-GCM or ChaCha20-Poly1305, ECDSA or RSA certificates, Extended Master Secret";

    /// <summary>The TLS 1.2 state if the ServerHello chose TLS 1.2 (or below) and the client offered it; null for TLS 1.3.</summary>
    public static HandshakeState? ChoosesTls12(HandshakeMessage serverHello, HandshakeContext c)
    {
        var offers12 = c.OffersTls12;
        if (!ServerHello12.SelectsTls12OrBelow(serverHello.Body))
        {
            if (!c.Options.Versions.HasFlag(TlsVersions.Tls13))
                throw new TlsException(TlsError.IllegalParameter, AlertDescription.UnsupportedExtension, "the server chose TLS 1.3, which the client did not offer");
            return null;
        }
        if (!offers12)
        {
            throw new TlsException(TlsError.HandshakeFailure, AlertDescription.ProtocolVersion, c.Options.Versions.HasFlag(TlsVersions.Tls12)
                ? "the server answered a hello that may only resume a TLS 1.3 session with TLS 1.2 or older"
                : "the server speaks only TLS 1.2 or older, and this client offered only TLS 1.3");
        }
        if (c.RetriedHello) throw TlsException.Illegal("a TLS 1.2 ServerHello after a HelloRetryRequest");
        return new ExpectServerHello12();
    }

    /// <summary>
    /// A TLS 1.2-only server refuses a TLS 1.3-only ClientHello with protocol_version: says so.
    /// A server that refuses the ClientHello outright (handshake_failure, insufficient_security) shares
    /// no suite with the profile: CBC-only and RSA-key-transport-only servers end here. Says so.
    /// </summary>
    public static TlsException? Explain(TlsException e, TlsClientOptions options, HandshakeState? state)
    {
        if (!e.SentByPeer || state is not ExpectServerHello) return null;
        if (e.Alert == AlertDescription.ProtocolVersion && !options.Versions.HasFlag(TlsVersions.Tls12))
        {
            return new TlsException(e.Error, e.Alert, $"{e.Message}: the server does not speak TLS 1.3 (it may speak only TLS 1.2, which this client did not offer)", e, sentByPeer: true);
        }
        if (!options.Versions.HasFlag(TlsVersions.Tls12)) return null;
        if (e.Alert is not (AlertDescription.HandshakeFailure or AlertDescription.InsufficientSecurity)) return null;
        return new TlsException(e.Error, e.Alert,
            $"{e.Message}: the server accepts nothing this client offers; for TLS 1.2 it offers only {Description} (no CBC suites, no RSA key transport)",
            e, sentByPeer: true);
    }
}
