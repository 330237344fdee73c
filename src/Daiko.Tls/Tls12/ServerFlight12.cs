using System.Security.Cryptography.X509Certificates;
using Daiko.Tls.Crypto;
using Daiko.Tls.Handshake;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Records;

namespace Daiko.Tls.Tls12;

/// <summary>
/// A TLS 1.2 ServerHello, reached from <see cref="ExpectServerHello"/> when the server chose TLS 1.2.
/// Enforces the profile: an offered ECDHE AEAD suite, Extended Master Secret, secure renegotiation,
/// and, when TLS 1.3 was offered too, no downgrade sentinel (RFC 8446 §4.1.3).
/// </summary>
internal sealed class ExpectServerHello12 : HandshakeState
{
    public override ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        var hello = ServerHello12.Parse(message.Body);
        var o = c.Options;
        if (c.OfferedEarlyData)
        {
            // RFC 8446 §4.2.10: a client that attempted 0-RTT MUST fail a connection answered with TLS 1.2 or older. Going
            // on would make the client's key sign for a handshake that then fails, under keys the early data already used.
            throw TlsException.Illegal("the server answered TLS 1.2 to a ClientHello that sent early data (TLS 1.3 0-RTT), which RFC 8446 requires the client to refuse");
        }
        if (o.Versions.HasFlag(TlsVersions.Tls13) && hello.CarriesDowngradeSentinel)
        {
            throw TlsException.Illegal("the server answered TLS 1.2 with the TLS 1.3 downgrade sentinel in its random: TLS 1.3 was removed from the ClientHello on the way");
        }
        if (!o.Tls12CipherSuites.Contains(hello.CipherSuite) || CipherSuiteInfo.FindTls12(hello.CipherSuite) is not { } suite)
        {
            throw TlsException.Illegal($"the server chose cipher suite 0x{(ushort)hello.CipherSuite:x4}, which the client did not offer");
        }
        if (!hello.ExtendedMasterSecret)
        {
            throw new TlsException(TlsError.HandshakeFailure, AlertDescription.HandshakeFailure, "the server does not support Extended Master Secret (RFC 7627), which this client requires for TLS 1.2");
        }
        if (hello.RenegotiationInfo is not { Length: 0 })
        {
            throw new TlsException(TlsError.HandshakeFailure, AlertDescription.HandshakeFailure, hello.RenegotiationInfo is null
                ? "the server does not support secure renegotiation (RFC 5746), which this client requires for TLS 1.2"
                : "the server's renegotiation_info is not empty in an initial handshake");
        }
        if (hello.Alpn is not null && !o.ApplicationProtocols.Contains(hello.Alpn))
        {
            throw TlsException.Illegal($"the server chose application protocol '{hello.Alpn}', which the client did not offer");
        }
        c.Suite = suite;
        c.Alpn = hello.Alpn;
        if (hello.RecordSizeLimit is int limit) c.Records.MaxPlaintextToSend = Math.Min(RecordProtection.MaxPlaintext, limit);
        c.Transcript.Add(message.Bytes);
        c.Records.AllowChangeCipherSpec = false;

        var ticket = c.OfferedTls12Ticket;
        var resumed = ticket is not null && c.SessionId.Length > 0 && hello.SessionId.AsSpan().SequenceEqual(c.SessionId);
        var handshake = new Handshake12(c.ClientRandom, hello.Random, suite, hello.SessionTicket) { Resumed = resumed };
        c.Tls12 = handshake;
        if (!resumed) return ValueTask.FromResult<HandshakeState>(new ExpectCertificate12(handshake));

        if (ticket!.Suite != suite.Suite) throw TlsException.Illegal("the server resumed with a cipher suite other than the ticket's");
        handshake.Master = MasterSecret12.Resumed(suite, ticket.Psk);
        handshake.DeriveKeys(c.Records);
        HandshakeState next = handshake.TicketPromised
            ? new ExpectNewSessionTicket12(handshake, ServerAuthentication.FromResumption())
            : new ExpectServerFinished12(handshake, ServerAuthentication.FromResumption());
        return ValueTask.FromResult(next);
    }
}

internal sealed class ExpectCertificate12(Handshake12 handshake) : HandshakeState
{
    public override async ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        if (message.Type != HandshakeType.Certificate) throw Unexpected(message, "Certificate");
        var certificate = Certificate12.Parse(message.Body);
        c.Transcript.Add(message.Bytes);
        var leaf = await ServerChain.ValidateAsync(c, certificate.Chain, cancellationToken);
        var fits = handshake.Suite.AuthenticatesWithEcdsa
            ? leaf.PublicKey.Oid.Value == "1.2.840.10045.2.1"
            : leaf.PublicKey.Oid.Value is RsaPublicKeys.RsaEncryptionOid or RsaPublicKeys.RsaPssOid;
        if (!fits)
        {
            throw new TlsException(TlsError.CertificateRejected, AlertDescription.UnsupportedCertificate, "the server's certificate key does not fit the cipher suite it chose");
        }
        return new ExpectServerKeyExchange12(handshake, leaf);
    }
}

internal sealed class ExpectServerKeyExchange12(Handshake12 handshake, X509Certificate2 leaf) : HandshakeState
{
    public override ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        // The leaf is shared (ParsedCertificates): read only, never disposed here.
        if (message.Type != HandshakeType.ServerKeyExchange) throw Unexpected(message, "ServerKeyExchange (ECDHE)");
        var exchange = ServerKeyExchange12.Parse(message.Body);
        if (!c.Options.Groups.Contains(exchange.Group) || !KeyShare.IsSupported(exchange.Group))
        {
            throw TlsException.Illegal($"the server chose group {exchange.Group}, which the client did not offer");
        }
        var authentication = ServerAuthentication.VerifyTls12(leaf, handshake.Suite, exchange.Scheme,
            exchange.SignedContent(handshake.ClientRandom, handshake.ServerRandom), exchange.Signature, c);
        c.Transcript.Add(message.Bytes);
        handshake.Share = KeyShare.Create(exchange.Group);
        c.AddPublicKeyOperation();
        handshake.PreMasterSecret = handshake.Share.Agree(exchange.PublicKey);
        c.AddPublicKeyOperation();
        c.Group = exchange.Group;
        return ValueTask.FromResult<HandshakeState>(new ExpectCertificateRequestOrServerHelloDone12(handshake, authentication));
    }
}

internal sealed class ExpectCertificateRequestOrServerHelloDone12(Handshake12 handshake, ServerAuthentication authentication) : HandshakeState
{
    public override ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        switch (message.Type)
        {
            case HandshakeType.CertificateRequest:
            {
                var request = CertificateRequest12.Parse(message.Body);
                c.Transcript.Add(message.Bytes);
                return ValueTask.FromResult<HandshakeState>(new ExpectServerHelloDone12(handshake, authentication, request));
            }
            case HandshakeType.ServerHelloDone:
                return new ExpectServerHelloDone12(handshake, authentication, null).HandleAsync(message, c, cancellationToken);
            default:
                throw Unexpected(message, "CertificateRequest or ServerHelloDone");
        }
    }
}
