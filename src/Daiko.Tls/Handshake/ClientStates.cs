using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;
using CertificateRequest = Daiko.Tls.Messages.CertificateRequest;

namespace Daiko.Tls.Handshake;

/// <summary>A client handshake state: it takes the next message and returns the state that follows.</summary>
internal abstract class HandshakeState
{
    public abstract ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext context, CancellationToken cancellationToken);

    protected static TlsException Unexpected(HandshakeMessage message, string state) =>
        TlsException.Unexpected($"{message.Type} while waiting for {state}");
}

internal sealed class ExpectServerHello(byte[] clientRandom) : HandshakeState
{
    public override async ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        if (message.Type != HandshakeType.ServerHello) throw Unexpected(message, "ServerHello");
        var o = c.Options;
        if (Tls12.Tls12Profile.ChoosesTls12(message, c) is { } tls12) return await tls12.HandleAsync(message, c, cancellationToken);
        var hello = ServerHello.Parse(message.Body);
        // Against the suites the ClientHello carried, not the options: a hello that may only resume offers the ticket's alone.
        if (!c.OfferedCipherSuites.Contains(hello.CipherSuite) || CipherSuiteInfo.Find(hello.CipherSuite) is not { } suite)
        {
            throw TlsException.Illegal($"the server chose cipher suite 0x{(ushort)hello.CipherSuite:x4}, which the client did not offer");
        }
        if (!hello.SessionIdEcho.AsSpan().SequenceEqual(c.SessionId))
        {
            throw TlsException.Illegal("the server echoed a session id the client did not send");
        }
        if (c.Suite is not null && c.Suite.Suite != suite.Suite)
        {
            throw TlsException.Illegal("the server changed cipher suite after HelloRetryRequest");
        }
        c.Suite = suite;

        if (hello.IsHelloRetryRequest)
        {
            if (c.RetriedHello) throw TlsException.Unexpected("a second HelloRetryRequest");
            if (hello.KeyShareGroup is { } g && (!o.Groups.Contains(g) || c.KeyShares.ContainsKey(g) || !KeyShare.IsSupported(g)))
            {
                throw TlsException.Illegal("the HelloRetryRequest asks for a group the client did not offer or already sent");
            }
            if (hello.KeyShareGroup is null && hello.Cookie is null)
            {
                throw TlsException.Illegal("a HelloRetryRequest that would not change the ClientHello");
            }
            c.RetriedHello = true;
            c.RetryGroup = hello.KeyShareGroup;
            c.Transcript.ReplaceFirstWithMessageHash(suite);
            c.Transcript.Add(message.Bytes);
            if (c.OfferedEarlyData)
            {
                c.OfferedEarlyData = false;
                c.Records.ClearWriteProtection();
                c.EarlyWriter = null;
            }
            await ClientHelloFlight.SendAsync(c, hello, clientRandom, cancellationToken);
            return new ExpectServerHello(clientRandom);
        }

        c.Transcript.Add(message.Bytes);
        var resumed = false;
        if (hello.SelectedIdentity is { } identity)
        {
            if (c.OfferedTicket is null || identity != 0)
                throw TlsException.Illegal("the server selected a PSK the client did not offer");
            if (CipherSuiteInfo.Get(c.OfferedTicket.Suite).Hash != suite.Hash)
                throw TlsException.Illegal("the server resumed with a suite whose hash differs from the ticket's");
            resumed = true;
        }

        byte[] shared;
        if (hello.KeyShare is not null)
        {
            if (hello.KeyShareGroup is not { } group || !c.KeyShares.TryGetValue(group, out var share))
                throw TlsException.Illegal("the server's key share is for a group the client did not send");
            if (c.RetryGroup is { } asked && group != asked)
                throw TlsException.Illegal("the server's key share is not for the group its HelloRetryRequest asked for");
            if (resumed && !o.PskModes.Contains(PskKeyExchangeMode.PskDheKe))
                throw TlsException.Illegal("the server used psk_dhe_ke, which the client did not offer");
            shared = share.Agree(hello.KeyShare);
            c.AddPublicKeyOperation();
            c.Group = group;
            c.KeyExchange = resumed ? PskKeyExchangeMode.PskDheKe : null;
        }
        else
        {
            if (!resumed) throw new TlsException(TlsError.IllegalParameter, AlertDescription.MissingExtension, "the server sent neither a key share nor a PSK");
            if (!o.PskModes.Contains(PskKeyExchangeMode.PskKe))
                throw TlsException.Illegal("the server used psk_ke, which the client did not offer");
            shared = [];
            c.KeyExchange = PskKeyExchangeMode.PskKe;
        }

        EarlySecret early;
        if (resumed)
        {
            early = c.Early!;
        }
        else
        {
            c.Early?.Dispose();
            c.OfferedTicket = null;
            early = new EarlySecret(suite, ReadOnlySpan<byte>.Empty);
        }
        c.Early = null;
        c.HandshakeSecret = early.Next(shared);
        CryptographicOperations.ZeroMemory(shared);
        var helloHash = c.Transcript.Hash(suite);
        c.ClientHandshakeSecret = c.HandshakeSecret.ClientTrafficSecret(helloHash);
        c.ServerHandshakeSecret = c.HandshakeSecret.ServerTrafficSecret(helloHash);
        c.Options.KeyLog?.Invoke("c hs traffic", c.ClientHandshakeSecret);
        c.Options.KeyLog?.Invoke("s hs traffic", c.ServerHandshakeSecret);
        c.Records.SetReadProtection(new RecordProtection(suite, (byte[])c.ServerHandshakeSecret.Clone()));
        if (!c.OfferedEarlyData)
        {
            c.Records.SetWriteProtection(new RecordProtection(suite, (byte[])c.ClientHandshakeSecret.Clone()));
        }
        return new ExpectEncryptedExtensions(resumed);
    }
}

internal sealed class ExpectEncryptedExtensions(bool resumed) : HandshakeState
{
    public override ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        if (message.Type != HandshakeType.EncryptedExtensions) throw Unexpected(message, "EncryptedExtensions");
        var ee = EncryptedExtensions.Parse(message.Body);
        if (ee.Alpn is not null && !c.Options.ApplicationProtocols.Contains(ee.Alpn))
        {
            throw TlsException.Illegal($"the server chose application protocol '{ee.Alpn}', which the client did not offer");
        }
        foreach (var type in ee.Types)
        {
            // RFC 8446 §4.2: an extension the client did not offer is unsupported_extension.
            if (type != (ushort)ExtensionType.EarlyData && !c.OfferedExtensions.Contains(type))
                throw new TlsException(TlsError.IllegalParameter, AlertDescription.UnsupportedExtension, $"the server sent extension {type} in EncryptedExtensions, which the client did not offer");
        }
        if (ee.EarlyDataAccepted && !c.OfferedEarlyData)
        {
            throw new TlsException(TlsError.IllegalParameter, AlertDescription.UnsupportedExtension, "the server accepted early data the client did not offer");
        }
        // RFC 8446 §4.2.10: early data was sent under the ticket's PSK, suite and ALPN; a server that accepts
        // it having chosen any other would read it under keys or a protocol it was not meant for.
        if (ee.EarlyDataAccepted && (!resumed || c.OfferedTicket is not { } ticket || c.Suite!.Suite != ticket.Suite || ee.Alpn != ticket.Alpn))
        {
            throw TlsException.Illegal("the server accepted early data without the ticket's PSK, or under another suite or ALPN than the ticket's");
        }
        c.Alpn = ee.Alpn;
        // The server's record_size_limit counts the inner plaintext: content, its type byte and padding.
        if (ee.RecordSizeLimit is int limit) c.Records.MaxPlaintextToSend = Math.Min(RecordProtection.MaxPlaintext, limit - 1);
        c.EarlyDataAccepted = ee.EarlyDataAccepted;
        c.Transcript.Add(message.Bytes);
        if (c.OfferedEarlyData && !ee.EarlyDataAccepted)
        {
            // Rejected: the early data is lost; from now on the client writes under handshake keys.
            c.Records.SetWriteProtection(new RecordProtection(c.Suite!, (byte[])c.ClientHandshakeSecret!.Clone()));
            c.EarlyWriter = null;
        }
        HandshakeState next = resumed
            ? new ExpectFinished(ServerAuthentication.FromResumption())
            : new ExpectCertificateOrCertificateRequest();
        return ValueTask.FromResult(next);
    }
}

internal sealed class ExpectCertificateOrCertificateRequest : HandshakeState
{
    public override ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        switch (message.Type)
        {
            case HandshakeType.CertificateRequest:
            {
                var request = CertificateRequest.Parse(message.Body);
                if (request.Context.Length != 0) throw TlsException.Illegal("a handshake CertificateRequest must have an empty context");
                c.CertificateRequest = request;
                c.Transcript.Add(message.Bytes);
                return ValueTask.FromResult<HandshakeState>(new ExpectCertificate());
            }
            case HandshakeType.Certificate:
                return new ExpectCertificate().HandleAsync(message, c, cancellationToken);
            default:
                throw Unexpected(message, "Certificate or CertificateRequest");
        }
    }
}

internal sealed class ExpectCertificate : HandshakeState
{
    public override async ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        if (message.Type != HandshakeType.Certificate) throw Unexpected(message, "Certificate");
        var certificate = CertificateMessage.Parse(message.Body);
        if (certificate.Context.Length != 0) throw TlsException.Illegal("the server's Certificate has a non-empty context");
        c.Transcript.Add(message.Bytes);
        var leaf = await ServerChain.ValidateAsync(c, certificate.Chain, cancellationToken);
        return new ExpectCertificateVerify(leaf);
    }
}

internal sealed class ExpectCertificateVerify(X509Certificate2 leaf) : HandshakeState
{
    public override ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        // The leaf is shared (ParsedCertificates): read only, never disposed here.
        if (message.Type != HandshakeType.CertificateVerify) throw Unexpected(message, "CertificateVerify");
        var verify = CertificateVerify.Parse(message.Body);
        var authentication = ServerAuthentication.Verify(leaf, verify, SignatureVerifier.Supported, c.Transcript.Hash(c.Suite!), c);
        c.Transcript.Add(message.Bytes);
        return ValueTask.FromResult<HandshakeState>(new ExpectFinished(authentication));
    }
}

internal sealed class ExpectFinished(ServerAuthentication authentication) : HandshakeState
{
    public override async ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        if (message.Type != HandshakeType.Finished) throw Unexpected(message, "Finished");
        var suite = c.Suite!;
        var expected = Hkdf13.FinishedMac(suite, c.ServerHandshakeSecret!, c.Transcript.Hash(suite));
        ServerAuthentication.CheckFinished(expected, message.Body);
        c.Transcript.Add(message.Bytes);
        if (c.Records.HasBufferedHandshake)
        {
            throw TlsException.Unexpected("handshake data after the server's Finished in the same flight");
        }
        var serverFinishedHash = c.Transcript.Hash(suite);
        var master = c.HandshakeSecret!.Next();
        c.HandshakeSecret = null;
        var clientApp = master.ClientApplicationTrafficSecret(serverFinishedHash);
        var serverApp = master.ServerApplicationTrafficSecret(serverFinishedHash);
        var exporter = master.ExporterMasterSecret(serverFinishedHash);
        c.Options.KeyLog?.Invoke("c ap traffic", clientApp);
        c.Options.KeyLog?.Invoke("s ap traffic", serverApp);
        c.Options.KeyLog?.Invoke("exp master", exporter);
        c.Records.SetReadProtection(new RecordProtection(suite, serverApp));
        c.AfterServerFinished = true;

        if (c.EarlyDataAccepted)
        {
            await c.SendHandshakeAsync(SimpleMessages.EndOfEarlyData(), cancellationToken);
            c.Records.SetWriteProtection(new RecordProtection(suite, (byte[])c.ClientHandshakeSecret!.Clone()));
        }
        if (c.CertificateRequest is { } request)
        {
            await SendClientCertificateAsync(c, request, cancellationToken);
        }
        var finished = Hkdf13.FinishedMac(suite, c.ClientHandshakeSecret!, c.Transcript.Hash(suite));
        await c.SendHandshakeAsync(SimpleMessages.Finished(finished), cancellationToken);
        var resumptionMaster = master.ResumptionMasterSecret(c.Transcript.Hash(suite));
        c.Options.KeyLog?.Invoke("res master", resumptionMaster);
        master.Dispose();
        c.Records.SetWriteProtection(new RecordProtection(suite, clientApp));
        return new HandshakeComplete(authentication, resumptionMaster, exporter);
    }

    private static async ValueTask SendClientCertificateAsync(HandshakeContext c, CertificateRequest request, CancellationToken cancellationToken)
    {
        var info = new CertificateRequestInfo(request.SignatureSchemes, request.CertificateAuthorities);
        var credential = c.Options.ClientCredentialSelector is { } select
            ? await select(info, cancellationToken)
            : c.Options.ClientCredential;
        SignatureScheme? scheme = null;
        if (credential is not null)
        {
            // Nullable, so that "none in common" is null and not the default scheme 0x0000, which a request may list.
            scheme = credential.Signer.SupportedSchemes.Where(s => request.SignatureSchemes.Contains(s) && SignatureVerifier.AllowedInCertificateVerify(s))
                .Select(s => (SignatureScheme?)s).FirstOrDefault();
            if (scheme is null || credential.CertificateChain.Count == 0)
            {
                // No scheme in common: send no certificate and let the server decide.
                credential = null;
                scheme = null;
            }
        }
        var chain = credential?.CertificateChain ?? [];
        // A signer that takes time (a card, a home server a round trip away): the Certificate leaves now, so that
        // the server checks the chain while the signature is made. It goes encrypted, only to a server whose
        // Finished verified, and the handshake is not done until CertificateVerify and Finished follow.
        await c.SendHandshakeAsync(new CertificateMessage(request.Context, chain).Encode(), cancellationToken, flush: credential?.Signer.SignsElsewhere == true);
        if (credential is null) return;
        if (c.PeerClosedWrites)
        {
            // Nothing more can reach the server: no signature is made (a card's use, an assist grant) for a dead handshake.
            throw new TlsException(TlsError.TransportClosed, AlertDescription.InternalError, "the server closed the connection before the client's CertificateVerify");
        }
        var content = SignatureVerifier.Content(server: false, c.Transcript.Hash(c.Suite!));
        byte[] signature;
        try
        {
            // Only a signer that asks for them is handed the messages (a copy); the usual signer gets the content alone.
            signature = credential.Signer is ITranscriptSigner shown
                ? await shown.SignAsync(scheme!.Value, content, c.Transcript.Bytes(), cancellationToken)
                : await credential.Signer.SignAsync(scheme!.Value, content, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException and not TlsException)
        {
            throw new TlsException(TlsError.SignerFailed, AlertDescription.InternalError, $"the client's signer failed: {e.Message}", e);
        }
        await c.SendHandshakeAsync(new CertificateVerify(scheme.Value, signature).Encode(), cancellationToken, flush: false);
    }
}

/// <summary>The end state: what the connection needs from the handshake.</summary>
internal sealed class HandshakeComplete(ServerAuthentication authentication, byte[] resumptionMasterSecret, byte[] exporterMasterSecret) : HandshakeState
{
    public ServerAuthentication Authentication { get; } = authentication;

    public byte[] ResumptionMasterSecret { get; } = resumptionMasterSecret;

    public byte[] ExporterMasterSecret { get; } = exporterMasterSecret;

    public override ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext context, CancellationToken cancellationToken) =>
        throw TlsException.Unexpected($"{message.Type} after the handshake completed");
}
