using Daiko.Tls.Handshake;
using Daiko.Tls.Records;

namespace Daiko.Tls;

/// <summary>Entry points of the TLS client engine (TLS 1.3, and the TLS 1.2 profile when offered).</summary>
public static class TlsClient
{
    /// <summary>
    /// Runs a full or resumed handshake over <paramref name="transport"/> and returns the connection.
    /// The connection owns the transport. Every failure is a <see cref="TlsException"/> carrying the
    /// alert that was sent; the handshake is bounded by <see cref="TlsClientOptions.HandshakeTimeout"/>.
    /// </summary>
    public static async Task<TlsConnection> ConnectAsync(Stream transport, TlsClientOptions options, CancellationToken cancellationToken)
    {
        Validate(options);
        var records = new RecordLayer(transport, options.Counters) { Padding = options.RecordPadding };
        using var context = new HandshakeContext(options, records);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.HandshakeTimeout);
        HandshakeState? state = null;
        try
        {
            var random = context.Random(32);
            await ClientHelloFlight.SendAsync(context, null, random, timeout.Token);
            state = new ExpectServerHello(random);
            while (state is not HandshakeComplete and not Tls12.HandshakeComplete12)
            {
                var message = await records.ReadHandshakeAsync(timeout.Token);
                state = await state.HandleAsync(message, context, timeout.Token);
            }
            records.AllowChangeCipherSpec = false;
            if (state is Tls12.HandshakeComplete12 tls12) return tls12.Connect(records, context);
            var complete = (HandshakeComplete)state;
            var connection = new TlsConnection(records, options, context.Suite!, context.Group, context.KeyExchange, context.Alpn,
                context.EarlyDataAccepted, context.ServerChain, complete.ResumptionMasterSecret);
            if (context.PeerClosedWrites) connection.MarkPeerClosedWrites();
            return connection;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await FailAsync(records, AlertDescription.UserCanceled);
            throw new TlsException(TlsError.Timeout, AlertDescription.UserCanceled, $"the handshake did not complete within {options.HandshakeTimeout.TotalSeconds:0.#} s");
        }
        catch (OperationCanceledException)
        {
            // The caller gave up: say so on the wire, and let the caller see its own cancellation.
            await FailAsync(records, AlertDescription.UserCanceled);
            throw;
        }
        catch (TlsException e)
        {
            if (!e.SentByPeer && e.Error != TlsError.TransportClosed) await FailAsync(records, e.Alert);
            else Abandon(records);
            if (Tls12.Tls12Profile.Explain(e, options, state) is { } explained) throw explained;
            throw;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            Abandon(records);
            throw new TlsException(TlsError.TransportClosed, AlertDescription.InternalError, $"the transport failed during the handshake: {e.Message}", e);
        }
        catch
        {
            Abandon(records);
            throw;
        }
    }

    private static void Abandon(RecordLayer records)
    {
        records.Dispose();
        try
        {
            records.Transport.Dispose();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The transport failed on its way out: the handshake's error is the one to report.
        }
    }

    /// <summary>Opens TCP to <paramref name="host"/> (trying each of its addresses in turn) with Nagle off.</summary>
    public static async Task<Stream> OpenTcpAsync(string host, int port, CancellationToken cancellationToken)
    {
        var addresses = System.Net.IPAddress.TryParse(host, out var literal)
            ? [literal]
            : await System.Net.Dns.GetHostAddressesAsync(host, cancellationToken);
        System.Net.Sockets.SocketException? last = null;
        foreach (var address in addresses.OrderBy(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 0 : 1))
        {
            var socket = new System.Net.Sockets.Socket(address.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(address, port, cancellationToken);
                return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
            }
            catch (System.Net.Sockets.SocketException e)
            {
                socket.Dispose();
                last = e;
            }
        }
        throw last ?? new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.HostNotFound);
    }

    /// <summary>Connects over TCP and runs the handshake (the usual way to reach a server).</summary>
    public static async Task<TlsConnection> ConnectAsync(string host, int port, TlsClientOptions options, CancellationToken cancellationToken)
    {
        Stream transport;
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            // Opening TCP counts against the handshake's time bound.
            timeout.CancelAfter(options.HandshakeTimeout);
            try
            {
                transport = await OpenTcpAsync(host, port, timeout.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TlsException(TlsError.Timeout, AlertDescription.UserCanceled, $"no TCP connection to {host}:{port} within {options.HandshakeTimeout.TotalSeconds:0.#} s");
            }
        }
        return await ConnectAsync(transport, options, cancellationToken);
    }

    /// <summary>
    /// Continues an exported connection's record layer over a new transport (which already carries the
    /// market's byte stream, e.g. spliced by the home server).
    /// </summary>
    public static TlsConnection Import(Stream transport, ExportedSession session, TlsClientOptions? options = null)
    {
        options ??= new TlsClientOptions();
        if (session.Version == TlsVersions.Tls12) return TlsConnection.Import12(transport, session, options);
        var suite = KeySchedule.CipherSuiteInfo.Get(session.Suite);
        var records = new RecordLayer(transport, options.Counters) { Padding = options.RecordPadding, AllowChangeCipherSpec = false };
        records.SetReadProtection(new RecordProtection(suite, (byte[])session.ServerSecret.Clone(), session.ServerSequence));
        records.SetWriteProtection(new RecordProtection(suite, (byte[])session.ClientSecret.Clone(), session.ClientSequence));
        records.InjectTransportBytes(session.PendingTransportBytes);
        var connection = new TlsConnection(records, options, suite, null, null, session.Alpn, false, [], (byte[])session.ResumptionMasterSecret.Clone(), session.ServerName);
        connection.AddPendingPlaintext(session.PendingPlaintext);
        return connection;
    }

    private static void Validate(TlsClientOptions options)
    {
        if ((options.Versions & TlsVersions.Both) == 0) throw new ArgumentException("at least one protocol version is required", nameof(options));
        if (options.Versions.HasFlag(TlsVersions.Tls13) && options.CipherSuites.Count == 0) throw new ArgumentException("at least one cipher suite is required", nameof(options));
        if (options.Versions.HasFlag(TlsVersions.Tls12) && (options.Tls12CipherSuites.Count == 0 || options.Tls12CipherSuites.Any(s => KeySchedule.CipherSuiteInfo.FindTls12(s) is null)))
            throw new ArgumentException("TLS 1.2 suites must be non-empty and among the ECDHE AEAD suites supported here", nameof(options));
        if (options.Groups.Count == 0 || options.Groups.Any(g => !Crypto.KeyShare.IsSupported(g))) throw new ArgumentException("groups must be non-empty and among x25519, secp256r1, secp384r1", nameof(options));
        if (options.CertificateValidator is null && !options.InsecureSkipValidation) throw new ArgumentException("a certificate validator is required", nameof(options));
        if (options.PskModes.Count == 0) throw new ArgumentException("at least one PSK mode is required", nameof(options));
        if (options.ApplicationProtocols.Any(p => p.Length is 0 or > 255)) throw new ArgumentException("application protocol names must be 1 to 255 bytes", nameof(options));
    }

    private static async ValueTask FailAsync(RecordLayer records, AlertDescription alert)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await records.SendAlertAsync(alert, cts.Token);
        }
        catch (Exception)
        {
            // Best effort: the transport may already be gone.
        }
        finally
        {
            records.Dispose();
            try
            {
                await records.Transport.DisposeAsync();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                // As above: the alert, not the close, is what the caller learns.
            }
        }
    }
}
