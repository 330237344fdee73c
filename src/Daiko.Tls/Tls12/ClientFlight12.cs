using System.Security.Cryptography;
using Daiko.Tls.Crypto;
using Daiko.Tls.Handshake;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;

namespace Daiko.Tls.Tls12;

/// <summary>
/// ServerHelloDone: the client answers with [Certificate], ClientKeyExchange, [CertificateVerify],
/// change_cipher_spec and Finished. The master secret is the Extended Master Secret over the
/// transcript through ClientKeyExchange.
/// </summary>
internal sealed class ExpectServerHelloDone12(Handshake12 handshake, ServerAuthentication authentication, CertificateRequest12? request) : HandshakeState
{
    public override async ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        if (message.Type != HandshakeType.ServerHelloDone) throw Unexpected(message, "ServerHelloDone");
        SimpleMessages12.EnsureEmpty(message.Body, "ServerHelloDone");
        c.Transcript.Add(message.Bytes);
        if (c.Records.HasBufferedHandshake) throw TlsException.Unexpected("handshake data after ServerHelloDone");

        var (credential, scheme) = request is null ? (null, default) : await ChooseCredentialAsync(c, request, cancellationToken);
        if (request is not null)
        {
            await c.SendHandshakeAsync(new Certificate12(credential?.CertificateChain ?? []).Encode(), cancellationToken, flush: false);
        }
        // One write for the whole flight, whatever the signer: a TLS 1.2 Certificate travels in the clear, so it
        // leaves only with the signature that makes it count (TLS 1.3 writes it early for a slow signer).
        await c.SendHandshakeAsync(SimpleMessages12.ClientKeyExchange(handshake.Share!.PublicKey), cancellationToken, flush: false);
        handshake.Master = MasterSecret12.Extended(handshake.Suite, handshake.PreMasterSecret!, c.Transcript.Hash(handshake.Suite));
        CryptographicOperations.ZeroMemory(handshake.PreMasterSecret!);
        handshake.PreMasterSecret = null;
        if (credential is not null)
        {
            // TLS 1.2 CertificateVerify signs every handshake message so far; the signer hashes them.
            var signature = await SignAsync(credential.Signer, scheme, c.Transcript.Bytes(), cancellationToken);
            await c.SendHandshakeAsync(new CertificateVerify(scheme, signature).Encode(), cancellationToken, flush: false);
        }
        await c.FlushFlightAsync(cancellationToken, flush: false);
        handshake.DeriveKeys(c.Records);
        await handshake.ChangeWriteKeysAsync(c.Records, cancellationToken);
        var finished = handshake.Master.ClientFinished(c.Transcript.Hash(handshake.Suite));
        await c.SendHandshakeAsync(SimpleMessages.Finished(finished), cancellationToken);
        c.Records.ExpectReply();
        return handshake.TicketPromised
            ? new ExpectNewSessionTicket12(handshake, authentication)
            : new ExpectServerFinished12(handshake, authentication);
    }

    private static async ValueTask<(ClientCredential?, SignatureScheme)> ChooseCredentialAsync(HandshakeContext c, CertificateRequest12 request, CancellationToken cancellationToken)
    {
        var info = new CertificateRequestInfo(request.SignatureSchemes, request.CertificateAuthorities);
        var credential = c.Options.ClientCredentialSelector is { } select
            ? await select(info, cancellationToken)
            : c.Options.ClientCredential;
        if (credential is null || credential.CertificateChain.Count == 0) return (null, default);
        foreach (var scheme in credential.Signer.SupportedSchemes)
        {
            if (request.SignatureSchemes.Contains(scheme) && SignatureVerifier.Supported.Contains(scheme) && request.AcceptsKeyFor(scheme))
            {
                return (credential, scheme);
            }
        }
        // No scheme in common: send no certificate and let the server decide.
        return (null, default);
    }

    private static async ValueTask<byte[]> SignAsync(ITlsSigner signer, SignatureScheme scheme, byte[] content, CancellationToken cancellationToken)
    {
        try
        {
            return await signer.SignAsync(scheme, content, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException and not TlsException)
        {
            throw new TlsException(TlsError.SignerFailed, AlertDescription.InternalError, $"the client's signer failed: {e.Message}", e);
        }
    }
}

/// <summary>The NewSessionTicket the server promised in its ServerHello (RFC 5077 §3.3), before its change_cipher_spec.</summary>
internal sealed class ExpectNewSessionTicket12(Handshake12 handshake, ServerAuthentication authentication) : HandshakeState
{
    public override ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        if (message.Type != HandshakeType.NewSessionTicket) throw Unexpected(message, "NewSessionTicket");
        var ticket = NewSessionTicket12.Parse(message.Body);
        c.Transcript.Add(message.Bytes);
        if (ticket.Ticket.Length > 0) handshake.NewTicket = ticket;
        return ValueTask.FromResult<HandshakeState>(new ExpectServerFinished12(handshake, authentication));
    }
}

/// <summary>
/// The server's Finished, which must come under the keys its change_cipher_spec switched to. In an
/// abbreviated handshake the client then sends its own change_cipher_spec and Finished.
/// </summary>
internal sealed class ExpectServerFinished12(Handshake12 handshake, ServerAuthentication authentication) : HandshakeState
{
    /// <summary>Seven days, in seconds: the most a ticket is taken to live (RFC 8446's limit for TLS 1.3).</summary>
    private const uint LongestTicketLifetime = 7 * 24 * 3600;

    public override async ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext c, CancellationToken cancellationToken)
    {
        if (message.Type != HandshakeType.Finished) throw Unexpected(message, "Finished");
        if (c.Records.PendingReadProtection is not null) throw TlsException.Unexpected("Finished before the server's change_cipher_spec");
        var master = handshake.Master!;
        var expected = master.ServerFinished(c.Transcript.Hash(handshake.Suite));
        ServerAuthentication.CheckFinished(expected, message.Body);
        c.Transcript.Add(message.Bytes);
        if (c.Records.HasBufferedHandshake) throw TlsException.Unexpected("handshake data after the server's Finished");
        if (handshake.Resumed)
        {
            await handshake.ChangeWriteKeysAsync(c.Records, cancellationToken);
            var finished = master.ClientFinished(c.Transcript.Hash(handshake.Suite));
            await c.SendHandshakeAsync(SimpleMessages.Finished(finished), cancellationToken);
        }
        SessionTicket? ticket = null;
        if (handshake.NewTicket is { } issued)
        {
            // The hint is advisory (RFC 5077 §3.3), and 0 says nothing: a ticket announced with none, or with more than 7 days
            // (the longest any ticket is taken to live here), is taken to live 7 days. Never less than the market may keep it:
            // a device's ticket count and ticket lifetime are judged by it.
            var lifetime = issued.LifetimeHint is 0 or > LongestTicketLifetime ? LongestTicketLifetime : issued.LifetimeHint;
            ticket = new SessionTicket(issued.Ticket, master.Export(), handshake.Suite.Suite, c.Options.ServerName, c.Alpn, lifetime, 0, 0, c.Options.Time.GetUtcNow(), [])
            {
                Version = TlsVersions.Tls12,
            };
        }
        return new HandshakeComplete12(authentication, master.Export(), ticket);
    }
}

/// <summary>The end of a TLS 1.2 handshake: what the connection needs.</summary>
internal sealed class HandshakeComplete12(ServerAuthentication authentication, byte[] masterSecret, SessionTicket? ticket) : HandshakeState
{
    public ServerAuthentication Authentication { get; } = authentication;

    public override ValueTask<HandshakeState> HandleAsync(HandshakeMessage message, HandshakeContext context, CancellationToken cancellationToken) =>
        throw TlsException.Unexpected($"{message.Type} after the handshake completed");

    public TlsConnection Connect(RecordLayer records, HandshakeContext c)
    {
        var resumed = Authentication.Resumed;
        var connection = new TlsConnection(records, c.Options, c.Suite!, c.Group, resumed ? PskKeyExchangeMode.PskKe : null, c.Alpn,
            false, c.ServerChain, masterSecret, version: TlsVersions.Tls12);
        if (ticket is not null) connection.AddTicket(ticket);
        return connection;
    }
}
