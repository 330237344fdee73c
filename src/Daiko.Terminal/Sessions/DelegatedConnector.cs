using System.Diagnostics;
using Daiko.Home.Control;
using Daiko.Tls;

namespace Daiko.Terminal.Sessions;

/// <summary>How the terminal wants to reach a market.</summary>
public enum SessionMode
{
    Auto,
    Resume,
    Handoff,
    Relay,
    Assist,
}

/// <summary>A delegated session: a stream to the market, the mode that produced it, and its cost.</summary>
public sealed record DelegatedSession(Stream Stream, SessionMode Mode, TlsConnection? Tls, TlsCounters Counters, long ControlBytes);

/// <summary>
/// The terminal side of F3-F7: asks the home server for what the mode needs and opens the session.
/// Only the terminal's own work is counted: its TLS bytes and operations, and its control-channel bytes.
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
        var reply = await control.RequestAsync(new ControlMessage("prefetch").Set("host", host).Set("port", port).Set("sni", host).Set("alpn", alpn).Set("min", minimum), cancellationToken);
        return ((int)reply.GetInt("ready"), (int)reply.GetInt("handshakes"));
    }

    public async Task<DelegatedSession> ConnectAsync(string host, int port, SessionMode mode, PskKeyExchangeMode kex = PskKeyExchangeMode.PskDheKe,
        ReadOnlyMemory<byte> earlyData = default, string? alpn = null, CancellationToken cancellationToken = default)
    {
        var counters = new TlsCounters();
        var controlBefore = control.BytesSent + control.BytesReceived;
        if (mode == SessionMode.Auto)
        {
            try
            {
                return await ConnectAsync(host, port, SessionMode.Resume, kex, earlyData, alpn, cancellationToken);
            }
            catch (ControlErrorException e) when (e.Code == "no-ticket")
            {
                return await ConnectAsync(host, port, SessionMode.Handoff, kex, earlyData, alpn, cancellationToken);
            }
        }
        var request = new ControlMessage("delegate").Set("host", host).Set("port", port).Set("sni", host).Set("alpn", alpn)
            .Set("mode", mode.ToString().ToLowerInvariant()).Set("kex", kex == PskKeyExchangeMode.PskKe ? "psk_ke" : "psk_dhe_ke");
        // The terminal connects to the market only once the ticket is in hand: opening TCP earlier would
        // overlap a round trip, but a market that serves one connection at a time (openssl s_server)
        // would then sit on the idle connection while the home server's handshake waits behind it.
        var reply = await control.RequestAsync(request, cancellationToken);
        Stream stream;
        TlsConnection? tls = null;
        switch (mode)
        {
            case SessionMode.Resume:
            {
                var ticket = SessionTicket.FromCbor(reply.GetBytes("ticket"));
                var (viaHost, viaPort) = Route(host, port);
                tls = await TlsClient.ConnectAsync(viaHost, viaPort, new TlsClientOptions
                {
                    ServerName = host,
                    ApplicationProtocols = alpn is null ? [] : [alpn],
                    ResumptionTicket = ticket,
                    PskModes = [kex],
                    EarlyData = earlyData,
                    // The terminal holds no user certificate: a market that refuses the ticket must fail
                    // the connection, never lead to an anonymous full handshake.
                    CertificateValidator = new RefuseFullHandshake(),
                    Counters = counters,
                    HandshakeTimeout = Timeout,
                    OperationTimeout = Timeout,
                }, cancellationToken);
                ticket.Wipe();
                if (!tls.Resumed)
                {
                    await tls.DisposeAsync();
                    throw new ControlErrorException("ticket-refused", $"{host} did not accept the delegated ticket");
                }
                stream = tls;
                break;
            }
            case SessionMode.Handoff:
            {
                var session = ExportedSession.FromCbor(reply.GetBytes("session"));
                var relay = control.OpenRelay(reply.GetInt("relay"));
                // The imported connection counts its own bytes and any public-key work, like the other modes.
                tls = TlsClient.Import(relay, session, new TlsClientOptions { InsecureSkipValidation = true, Counters = counters, OperationTimeout = Timeout });
                session.Wipe();
                stream = tls;
                break;
            }
            case SessionMode.Relay:
                stream = new CountingStream(control.OpenRelay(reply.GetInt("relay")), counters);
                break;
            case SessionMode.Assist:
            {
                var chain = reply.GetList("chain").OfType<byte[]>().ToList();
                var (viaHost, viaPort) = Route(host, port);
                tls = await TlsClient.ConnectAsync(viaHost, viaPort, new TlsClientOptions
                {
                    ServerName = host,
                    ApplicationProtocols = alpn is null ? [] : [alpn],
                    ClientCredential = new ClientCredential(chain, new RemoteSigner(control)),
                    CertificateValidator = new RemoteValidator(control),
                    Counters = counters,
                    HandshakeTimeout = Timeout,
                    OperationTimeout = Timeout,
                }, cancellationToken);
                stream = tls;
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(mode));
        }
        return new DelegatedSession(stream, mode, tls, counters, control.BytesSent + control.BytesReceived - controlBefore);
    }
}

/// <summary>Fails any certificate-based handshake: used where only a PSK may authenticate.</summary>
internal sealed class RefuseFullHandshake : IServerCertificateValidator
{
    public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken) =>
        ValueTask.FromResult(CertificateVerdict.Fail(CertificateProblem.Other, $"{serverName} refused the delegated ticket and asked for a full handshake"));
}

/// <summary>Assist mode: the home card signs CertificateVerify.</summary>
internal sealed class RemoteSigner(ControlConnection control) : ITlsSigner
{
    public IReadOnlyList<SignatureScheme> SupportedSchemes { get; } =
        [SignatureScheme.EcdsaSecp256r1Sha256, SignatureScheme.EcdsaSecp384r1Sha384, SignatureScheme.RsaPssRsaeSha256];

    public async ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        var reply = await control.RequestAsync(new ControlMessage("sign").Set("scheme", (int)scheme).Set("content", content.ToArray()), cancellationToken);
        return reply.GetBytes("signature");
    }
}

/// <summary>Assist mode: the home server gives the verdict on the market's chain.</summary>
internal sealed class RemoteValidator(ControlConnection control) : IServerCertificateValidator
{
    public async ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
    {
        var reply = await control.RequestAsync(new ControlMessage("verify-chain").Set("host", serverName).Set("chain", chain.ToList()), cancellationToken);
        return reply.GetBool("trusted")
            ? CertificateVerdict.Ok
            : CertificateVerdict.Fail(Enum.TryParse<CertificateProblem>(reply.GetStringOrNull("problem"), out var p) ? p : CertificateProblem.Other, reply.GetStringOrNull("reason") ?? "the home server rejected the market's chain");
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
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

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

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
