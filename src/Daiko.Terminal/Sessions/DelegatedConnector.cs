using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Tls;

namespace Daiko.Terminal.Sessions;

/// <summary>A delegated session: a stream to the market, the mode that produced it, and its cost.</summary>
public sealed record DelegatedSession(Stream Stream, DelegationMode Mode, TlsConnection? Tls, TlsCounters Counters, long ControlBytes);

/// <summary>
/// The terminal side of F3-F7: asks the home server once for what the mode needs and opens the
/// session with what comes back (for <see cref="DelegationMode.Auto"/> the home server picks the mode
/// and its reply says which). Only the terminal's own work is counted: its TLS bytes and operations,
/// and its control-channel bytes.
/// </summary>
public sealed class DelegatedConnector(ControlConnection control)
{
    /// <summary>
    /// Where the terminal's own TCP connections to a market go, if not to the market's address
    /// (e.g. through an emulated slow link in benchmarks). The home server still uses the real address.
    /// </summary>
    public Func<string, int, (string Host, int Port)>? TerminalRoute { get; init; }

    /// <summary>How long the terminal's own handshake, and then each read or write of the session, may wait on the market.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    private (string Host, int Port) Route(string host, int port) => TerminalRoute?.Invoke(host, port) ?? (host, port);

    /// <summary>
    /// Asks the home server to have at least <paramref name="minimum"/> tickets ready for this market
    /// (fetching them now, ahead of need); 0 only asks how many are ready.
    /// </summary>
    public async Task<(int Ready, int Handshakes)> PrefetchAsync(string host, int port, int minimum = 1, string? alpn = null, CancellationToken cancellationToken = default)
    {
        var reply = await control.RequestAsync<PrefetchedReply>(new PrefetchRequest(new MarketAddress(host, port, host, alpn), minimum), cancellationToken);
        return (reply.Ready, reply.Handshakes);
    }

    /// <param name="kex">
    /// The PSK key exchange the terminal offers when it resumes (its own choice; the home server is not
    /// told). psk_dhe_ke by default: a fresh ECDHE keeps the session's traffic secret even from whoever
    /// later learns the ticket's PSK (or the market's ticket key). Null trades that for the cost: psk_ke
    /// (no public-key operation at all) where the home server found the market accepts it
    /// (<see cref="SessionTicket.MarketAcceptsPskKe"/>), psk_dhe_ke otherwise; a market that refuses the
    /// psk_ke it was said to accept (an alert, or a closed connection) gets the same ticket again with psk_dhe_ke
    /// (and without early data: the caller sends its request after the handshake, as <see cref="TlsConnection.EarlyDataAccepted"/> says).
    /// </param>
    /// <param name="fresh">
    /// Resume from a new full handshake, not from a ticket the home server (or the agent's stock) already
    /// holds: those are dropped first (<see cref="DelegateRequest.Fresh"/>). The terminal asks for this
    /// itself, once, when the market refuses a ticket (its ticket keys changed, so the rest held for it
    /// are as stale).
    /// </param>
    public async Task<DelegatedSession> ConnectAsync(string host, int port, DelegationMode mode, PskKeyExchangeMode? kex = PskKeyExchangeMode.PskDheKe,
        ReadOnlyMemory<byte> earlyData = default, string? alpn = null, CancellationToken cancellationToken = default, bool fresh = false)
    {
        var counters = new TlsCounters();
        var controlBefore = control.BytesSent + control.BytesReceived;
        // The terminal connects to the market only once the ticket is in hand: opening TCP earlier would
        // overlap a round trip, but a market that serves one connection at a time (openssl s_server)
        // would then sit on the idle connection while the home server's handshake waits behind it.
        var reply = await control.RequestAsync(new DelegateRequest(new MarketAddress(host, port, host, alpn), mode, fresh), cancellationToken);
        Stream stream;
        TlsConnection? tls = null;
        DelegationMode used;
        switch (reply)
        {
            case TicketReply { Ticket: var ticket }:
            {
                used = DelegationMode.Resume;
                var offered = kex ?? (ticket.MarketAcceptsPskKe && ticket.Version == TlsVersions.Tls13 ? PskKeyExchangeMode.PskKe : PskKeyExchangeMode.PskDheKe);
                // Only a ticket refused on a psk_dhe_ke try with nothing before it says the market's ticket keys
                // changed (so the others held for it are as stale); a refused psk_ke, or a ticket the market
                // spent on one, says nothing of the others.
                var staleIfRefused = offered == PskKeyExchangeMode.PskDheKe;
                TlsException? refused = null;
                try
                {
                    try
                    {
                        tls = await ResumeAsync(host, port, alpn, ticket, offered, earlyData, counters, cancellationToken);
                    }
                    catch (TlsException e) when (kex is null && offered == PskKeyExchangeMode.PskKe && (e.SentByPeer || e.Error == TlsError.TransportClosed))
                    {
                        // The market no longer takes psk_ke (the home server's finding is older than its change): it
                        // said so with an alert, or closed the connection. The ticket is still good for psk_dhe_ke unless
                        // the market spent it on the refused try (then this one is refused as a stale ticket would be).
                        // No early data the second time: a market that closed the connection may have acted on the
                        // first try's, and the request then goes after the handshake. The failed try stays in the cost.
                        offered = PskKeyExchangeMode.PskDheKe;
                        tls = await ResumeAsync(host, port, alpn, ticket, offered, default, counters, cancellationToken);
                    }
                }
                catch (TlsException e) when (RefusedTheTicket(e))
                {
                    refused = e;
                }
                finally
                {
                    // Wiped before anything else is tried.
                    ticket.Wipe();
                }
                if (refused is null && !tls!.Resumed)
                {
                    await tls.DisposeAsync();
                    tls = null;
                }
                if (tls is null)
                {
                    // The market refused the ticket (a stale one from the stock, or its ticket keys changed): in auto
                    // the session is handed off instead, and asked for resume the terminal asks once for a ticket from
                    // a new handshake; either way, if the ticket itself was refused, the tickets held for the market
                    // go (fresh). The failed attempt stays in the cost. A fresh ticket refused too is said.
                    if (mode == DelegationMode.Auto) return await AgainAsync(host, port, DelegationMode.Handoff, kex, alpn, staleIfRefused, counters, controlBefore, cancellationToken);
                    if (staleIfRefused && !fresh) return await AgainAsync(host, port, DelegationMode.Resume, kex, alpn, fresh: true, counters, controlBefore, cancellationToken);
                    throw new ControlErrorException(ErrorCode.TicketRefused, refused is null
                        ? $"{host} did not accept the delegated ticket"
                        : refused.Error == TlsError.CertificateRejected
                            ? refused.Message
                            : $"{host} refused the delegated ticket ({(offered == PskKeyExchangeMode.PskKe ? "it may not allow psk_ke: try --kex psk_dhe_ke; " : "")}it answered {refused.Alert})");
                }
                stream = tls;
                break;
            }
            case SecretsReply secrets:
            {
                used = DelegationMode.Handoff;
                var relay = control.OpenRelay(secrets.Relay);
                // The secrets came from the home server over the pinned control channel: the market's
                // certificate was validated there, in the handshake that produced them.
                // The imported connection counts its own bytes and any public-key work, like the other modes.
                tls = TlsClient.Import(relay, secrets.Session, new TlsClientOptions { Counters = counters, OperationTimeout = Timeout });
                secrets.Session.Wipe();
                stream = tls;
                break;
            }
            case RelayReply relayReply:
                used = DelegationMode.Relay;
                stream = new CountingStream(control.OpenRelay(relayReply.Relay), counters);
                break;
            case AssistReply assist:
            {
                used = DelegationMode.Assist;
                var (viaHost, viaPort) = Route(host, port);
                tls = await TlsClient.ConnectAsync(viaHost, viaPort, new TlsClientOptions
                {
                    ServerName = host,
                    ApplicationProtocols = alpn is null ? [] : [alpn],
                    ClientCredential = new ClientCredential(assist.Chain, new RemoteSigner(control)),
                    CertificateValidator = new RemoteValidator(control),
                    // TLS 1.2 too: the home server then parses and checks the whole transcript before signing.
                    Versions = TlsVersions.Both,
                    Counters = counters,
                    HandshakeTimeout = Timeout,
                    OperationTimeout = Timeout,
                }, cancellationToken);
                stream = tls;
                break;
            }
            default:
                throw new ControlErrorException(ErrorCode.BadRequest, $"the home server answered 'delegate' with '{reply.Type}'");
        }
        return new DelegatedSession(stream, used, tls, counters, control.BytesSent + control.BytesReceived - controlBefore);
    }

    /// <summary>The terminal's own connection to the market, resumed with <paramref name="ticket"/> and nothing else.</summary>
    private async Task<TlsConnection> ResumeAsync(string host, int port, string? alpn, SessionTicket ticket, PskKeyExchangeMode kex,
        ReadOnlyMemory<byte> earlyData, TlsCounters counters, CancellationToken cancellationToken)
    {
        var (viaHost, viaPort) = Route(host, port);
        return await TlsClient.ConnectAsync(viaHost, viaPort, new TlsClientOptions
        {
            ServerName = host,
            ApplicationProtocols = alpn is null ? [] : [alpn],
            ResumptionTicket = ticket,
            // Only the ticket's version: a TLS 1.2 ticket resumes with no key share at all.
            Versions = ticket.Version,
            PskModes = [kex],
            // Only the ticket may authenticate (see below), so the hello leaves out what a full handshake needs.
            ResumeOnly = true,
            EarlyData = earlyData,
            // The terminal holds no user certificate: a market that refuses the ticket must fail
            // the connection, never lead to an anonymous full handshake.
            CertificateValidator = new RefuseFullHandshake(),
            Counters = counters,
            HandshakeTimeout = Timeout,
            OperationTimeout = Timeout,
        }, cancellationToken);
    }

    /// <summary>
    /// The market would not resume: it went for a full handshake (which the terminal refuses), or it
    /// refused the resume-only hello outright (missing_extension, handshake_failure).
    /// </summary>
    private static bool RefusedTheTicket(TlsException e) =>
        e.Error == TlsError.CertificateRejected
        || e.SentByPeer && e.Alert is AlertDescription.MissingExtension or AlertDescription.HandshakeFailure;

    /// <summary>
    /// After a refused ticket, once more in <paramref name="mode"/> (auto: handed off; resume: a ticket from
    /// a new handshake), with the market's other tickets dropped if <paramref name="fresh"/>, and the failed
    /// attempt in the cost. No early data: the caller sends its request after the handshake, as
    /// <see cref="TlsConnection.EarlyDataAccepted"/> says.
    /// </summary>
    private async Task<DelegatedSession> AgainAsync(string host, int port, DelegationMode mode, PskKeyExchangeMode? kex, string? alpn, bool fresh,
        TlsCounters failed, long controlBefore, CancellationToken cancellationToken)
    {
        var session = await ConnectAsync(host, port, mode, kex, alpn: alpn, cancellationToken: cancellationToken, fresh: fresh);
        session.Counters.Add(failed);
        return session with { ControlBytes = control.BytesSent + control.BytesReceived - controlBefore };
    }
}

/// <summary>Fails any certificate-based handshake: used where only a PSK may authenticate.</summary>
internal sealed class RefuseFullHandshake : IServerCertificateValidator
{
    public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken) =>
        ValueTask.FromResult(CertificateVerdict.Fail(CertificateProblem.Other, $"{serverName} refused the delegated ticket and asked for a full handshake"));
}

/// <summary>
/// Assist mode: the home card signs CertificateVerify. For TLS 1.3 the handshake messages go with the
/// content, for the home server to check them and compute the content itself; for TLS 1.2 the content
/// is those messages.
/// </summary>
internal sealed class RemoteSigner(ControlConnection control) : ITranscriptSigner
{
    public IReadOnlyList<SignatureScheme> SupportedSchemes { get; } =
        [SignatureScheme.EcdsaSecp256r1Sha256, SignatureScheme.EcdsaSecp384r1Sha384, SignatureScheme.RsaPssRsaeSha256];

    /// <summary>The key is in the home card, a round trip away: the Certificate leaves while the home server checks and signs.</summary>
    public bool SignsElsewhere => true;

    public async ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken) =>
        (await control.RequestAsync<SignatureReply>(new SignRequest(scheme, content.ToArray()), cancellationToken)).Signature;

    public async ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, ReadOnlyMemory<byte> transcript, CancellationToken cancellationToken) =>
        (await control.RequestAsync<SignatureReply>(new SignRequest(scheme, content.ToArray(), transcript.ToArray()), cancellationToken)).Signature;
}

/// <summary>Assist mode: the home server gives the verdict on the market's chain.</summary>
internal sealed class RemoteValidator(ControlConnection control) : IServerCertificateValidator
{
    public async ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
    {
        var reply = await control.RequestAsync<VerdictReply>(new VerifyChainRequest(serverName, chain.ToList()), cancellationToken);
        return reply.Trusted
            ? CertificateVerdict.Ok
            : CertificateVerdict.Fail(reply.Problem == CertificateProblem.None ? CertificateProblem.Other : reply.Problem, reply.Reason ?? "the home server rejected the market's chain");
    }
}

/// <summary>Counts bytes through a stream (the terminal's side of a spliced session).</summary>
internal sealed class CountingStream(Stream inner, TlsCounters counters) : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() => inner.Flush();
    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    /// <summary>Asynchronous only, like the relay it counts: a blocking call would hold a thread on the control channel.</summary>
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("a spliced session is read asynchronously");
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("a spliced session is written asynchronously");

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = await inner.ReadAsync(buffer, cancellationToken);
        counters.AddBytesReceived(n);
        return n;
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        counters.AddBytesSent(buffer.Length);
        await inner.WriteAsync(buffer, cancellationToken);
    }

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        await base.DisposeAsync();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
