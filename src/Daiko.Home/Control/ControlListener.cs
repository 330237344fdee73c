using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Home.Trust;
using Daiko.Protocol;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Control;

/// <summary>
/// Accepts terminals: TLS 1.3 with the home server's identity, control protocol version by ALPN
/// (<see cref="ControlProtocol.Versions"/>: daiko/2, else daiko/1), then device authentication by the certificate the home
/// server issued. A client certificate is checked during the handshake against exactly the home
/// identity (no downloads, no revocation fetch: nothing a stranger's certificate names is ever
/// fetched), and one this home server did not issue fails the handshake. An unknown or revoked device,
/// or a terminal without this protocol version, gets one error frame with id 0 and the connection ends.
/// A peer without a device certificate may only enroll, in small frames, within 10 s of idleness;
/// strangers and devices are admitted apart (<see cref="PeerAdmission"/>). Every connection is owned:
/// disposal waits for them.
/// </summary>
public sealed class ControlListener : IAsyncDisposable
{
    private static readonly ControlGate EnrollOnly = new(type => type == Daiko.Protocol.Messages.EnrollRequest.WireType, ErrorCode.Unauthenticated,
        "this connection presented no device certificate: it may only enroll");

    private readonly TcpListener _listener;
    private readonly PeerLimits _limits;
    private readonly HomeIdentity _identity;
    private readonly SslStreamCertificateContext _serverCertificate;
    private readonly IControlRoutes _routes;
    private readonly ConnectionRegistry _all = new();

    /// <summary>
    /// The log lines about peers that have not authenticated (a failed handshake, a refused PROXY header or protocol, a
    /// stranger's refused request, a revoked device's connection): one a kind and source (address, IPv6 /64) every 10 s,
    /// 30 in all every 10 s, each saying how many went unwritten before it, so that strangers cannot fill the log and
    /// push the lines that matter out of it.
    /// </summary>
    private readonly StrangerRefusals _strangerLines = new(window: TimeSpan.FromSeconds(10), maxLinesPerWindow: 30);
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskSet _serving = new();
    private Task _acceptLoop = Task.CompletedTask;

    public ControlListener(IPEndPoint endpoint, HomeIdentity identity, DeviceRegistry devices, ConnectionRegistry connections, RequestDispatcher dispatcher, ILogger logger, PeerLimits? limits = null)
        : this(endpoint, identity, new SingleOwnerRoutes(devices, dispatcher, connections), logger, limits)
    {
    }

    /// <summary>A listener for the owners <paramref name="routes"/> knows (a hosted node serves many).</summary>
    public ControlListener(IPEndPoint endpoint, HomeIdentity identity, IControlRoutes routes, ILogger logger, PeerLimits? limits = null)
    {
        _limits = limits ?? new PeerLimits();
        Admission = new PeerAdmission(_limits);
        _listener = new TcpListener(endpoint);
        _identity = identity;
        // Built once, offline: handing SslStream the bare certificate makes it build the server's own chain
        // (and its native context) again in every handshake, a stranger's included.
        _serverCertificate = SslStreamCertificateContext.Create(identity.Certificate, additionalCertificates: null, offline: true);
        _routes = routes;
        _logger = logger;
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_listener.LocalEndpoint;

    public PeerAdmission Admission { get; }

    /// <summary>
    /// Every connection begins with a PROXY protocol v2 header from a load balancer (<c>home serve
    /// --proxy-protocol</c>); the client it names is the peer's address for the per-source limits and
    /// enrollment. A connection without a valid header is closed before its TLS handshake.
    /// </summary>
    public bool ProxyProtocol { get; init; }

    /// <summary>With <see cref="ProxyProtocol"/>: the balancers whose headers are believed; a connection from any other peer is refused and logged.</summary>
    public ProxySources ProxyFrom { get; init; } = ProxySources.Loopback;

    /// <summary>The control protocol versions accepted, the preferred first (fewer only to test an older server).</summary>
    public IReadOnlyList<string> Versions
    {
        get => _versions;
        init
        {
            _versions = value;
            _alpn = [.. value.Select(v => new SslApplicationProtocol(v))];
        }
    }

    private readonly IReadOnlyList<string> _versions = ControlProtocol.Versions;
    private readonly List<SslApplicationProtocol> _alpn = [.. ControlProtocol.Versions.Select(v => new SslApplicationProtocol(v))];

    public void Start()
    {
        _listener.Start();
        _acceptLoop = AcceptLoopAsync();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (_stop.IsCancellationRequested && e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            // Off the accept loop: a handshake whose ClientHello is already there would otherwise run its
            // key exchange and signature here, and every connection behind it would wait for that.
            _serving.Track(Task.Run(() => ServeLoggedAsync(client)));
        }
    }

    /// <summary>Whether a line of <paramref name="kind"/> about a stranger at <paramref name="address"/> is written now (<see cref="_strangerLines"/>): null if not, else what it adds about the lines not written before it.</summary>
    private string? SayOfStranger(string kind, IPAddress address) =>
        _strangerLines.Note($"{kind} {EnrollmentLimiter.AddressKey(address)}") switch
        {
            (false, _) => null,
            (true, 0) => "",
            (true, var unwritten) => $" ({unwritten} more line(s) about peers without a device certificate not written before this one)",
        };

    private async Task ServeLoggedAsync(TcpClient client)
    {
        try
        {
            await ServeAsync(client);
        }
        catch (Exception e)
        {
            // Expected failures are handled inside; anything else ends this connection only, and is logged.
            _logger.BackgroundFailed(e);
            client.Dispose();
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        var slot = Admission.AdmitStranger(((IPEndPoint)client.Client.RemoteEndPoint!).Address);
        try
        {
            await ServeAdmittedAsync(client, slot);
        }
        finally
        {
            Admission.Release(slot);
        }
    }

    private async Task ServeAdmittedAsync(TcpClient client, PeerAdmission.Slot slot)
    {
        client.NoDelay = true;
        slot.OnClose(client.Dispose);
        var ssl = new SslStream(client.GetStream(), leaveInnerStreamOpen: false);
        try
        {
            using var handshake = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            handshake.CancelAfter(_limits.HandshakeTimeout);
            if (ProxyProtocol && !ProxyFrom.Allows(slot.Address))
            {
                throw new ProxyProtocolException($"it is not a load balancer this server trusts (--proxy-from {ProxyFrom})");
            }
            if (ProxyProtocol && await ProxyProtocolV2.ReadAsync(client.GetStream(), handshake.Token) is { Source: { } source })
            {
                Admission.Readdress(slot, source.Address);
            }
            await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificateContext = _serverCertificate,
                EnabledSslProtocols = SslProtocols.Tls13,
                ApplicationProtocols = _alpn,
                ClientCertificateRequired = true,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                // Only the home identity is trusted, and nothing is downloaded: a stranger's certificate
                // (whatever AIA or CRL URL it names) fails here, in the handshake. No certificate at all
                // is let through: such a peer may only enroll.
                CertificateChainPolicy = _identity.DeviceChainPolicy(),
                RemoteCertificateValidationCallback = (_, _, _, errors) => errors is SslPolicyErrors.None or SslPolicyErrors.RemoteCertificateNotAvailable,
            }, handshake.Token);
        }
        catch (ProxyProtocolException e)
        {
            if (SayOfStranger("proxy", slot.Address) is { } unwritten) _logger.ProxyHeaderRefused(slot.Address.ToString(), e.Message, unwritten);
            await ssl.DisposeAsync();
            client.Dispose();
            return;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException or SocketException or System.ComponentModel.Win32Exception or ObjectDisposedException)
        {
            if (SayOfStranger("handshake", slot.Address) is { } unwritten) _logger.HandshakeFailed(slot.Address.ToString(), e.GetType().Name, e.Message, unwritten);
            await ssl.DisposeAsync();
            client.Dispose();
            return;
        }
        var version = ssl.NegotiatedApplicationProtocol.ToString();
        if (!_versions.Contains(version))
        {
            var spoken = string.Join(" or ", _versions);
            if (SayOfStranger("protocol", slot.Address) is { } unwritten) _logger.ProtocolVersionRefused(spoken, version, unwritten);
            await RefuseAsync(ssl, ErrorCode.ProtocolVersion, $"this home server speaks control protocol {spoken}; update the terminal");
            return;
        }
        string? deviceId = null;
        ControlRoute? route = null;
        if (ssl.RemoteCertificate is { } presented)
        {
            using var certificate = new X509Certificate2(presented);
            DeviceLookup lookup;
            try
            {
                lookup = _identity.Issued(certificate) ? await _routes.FindDeviceAsync(certificate, DeviceIdOf(certificate), _stop.Token) : new DeviceLookup(null, null);
            }
            catch (Exception e) when (Storage.StoreOutage.Is(e))
            {
                // Who the device is cannot be known now: refused as a moment's failure, to be tried again, not as a stranger.
                Storage.StoreOutage.Log(_logger, "connect", e);
                await RefuseAsync(ssl, ErrorCode.Unavailable, Storage.StoreOutage.Sentence);
                return;
            }
            var device = lookup.Device;
            if (device is null || lookup.Route is null || device.Revoked || !device.PublicKeyInfo.AsSpan().SequenceEqual(certificate.PublicKey.ExportSubjectPublicKeyInfo()))
            {
                var revoked = device?.Revoked == true;
                // Audited a few at a time (a revoked device's key may connect again and again): once a device, or an address, a minute.
                if (lookup.Route is { } owner)
                {
                    await owner.Devices.AuditStrangerRefusalAsync(device is null ? EnrollmentLimiter.AddressKey(slot.Address) : "device " + device.Id, "connect",
                        revoked ? "refused: revoked device" : "refused: unknown device", deviceId: device?.Id);
                }
                else if (SayOfStranger("no-owner", slot.Address) is { } unwritten)
                {
                    _logger.RequestRefused("(no owner here)", "connect", ErrorCode.UnknownDevice.ToWire(), "a device certificate that names no owner of this server" + unwritten);
                }
                await RefuseAsync(ssl, revoked ? ErrorCode.Revoked : ErrorCode.UnknownDevice,
                    revoked ? "this device was revoked by the home server's owner" : "this device is not enrolled with this home server");
                return;
            }
            deviceId = device.Id;
            route = lookup.Route;
            Admission.Promote(slot, deviceId);
        }
        var peer = slot.Address;
        var registry = route?.Connections ?? _routes.StrangerConnections;
        var log = route?.Logger ?? _logger;
        var connection = new ControlConnection(ssl, (request, c) => route is null ? _routes.DispatchStrangerAsync(request, c, peer) : route.Dispatcher.DispatchAsync(request, c, deviceId, peer),
            e => log.HandlerFailed("control", e))
        {
            OnRefusal = (request, code, message) =>
            {
                if (deviceId is not null) log.RequestRefused(deviceId, request?.Type ?? "(undecodable)", code.ToWire(), message);
                else if (SayOfStranger("refusal", peer) is { } unwritten) log.RequestRefused($"(not enrolled, {peer})", request?.Type ?? "(undecodable)", code.ToWire(), message + unwritten);
            },
            RefusesUnopenedRelays = true,
            Version = version,
            Gate = deviceId is null ? EnrollOnly : null,
            MaxFrameBytes = deviceId is null ? ControlProtocol.MaxUnauthenticatedFrameBytes : ControlProtocol.MaxFrameBytes,
            // An enrolled device's channel may stay idle as long as the device likes (the terminal agent keeps
            // one open for its whole unlock): only a stranger's silence is cut short.
            IdleTimeout = deviceId is null ? _limits.StrangerIdleTimeout : null,
        };
        slot.OnClose(() => connection.Close(deviceId is null ? "too many connections without a device certificate" : "too many connections of this device"));
        registry.Add(connection, deviceId);
        _all.Add(connection, deviceId);
        connection.Start();
        try
        {
            await connection.Completion;
            // A device's channel that ended on a malformed frame is worth a line: a terminal does not send one.
            if (deviceId is not null && connection.CloseException is ProtocolException broke) log.ControlChannelBroke(deviceId, broke.Message);
        }
        finally
        {
            registry.Remove(connection);
            _all.Remove(connection);
            await connection.DisposeAsync();
        }
    }

    /// <summary>
    /// Refuses the whole connection, then reads (and drops) what the peer already sent until it closes
    /// or two seconds pass, so that closing does not reset the connection before the peer has read it.
    /// </summary>
    private static async Task RefuseAsync(SslStream ssl, ErrorCode code, string message)
    {
        await using var _ = ssl;
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await ControlConnection.RefuseAsync(ssl, code, message, deadline.Token);
            var sink = new byte[4096];
            while (await ssl.ReadAsync(sink, deadline.Token) > 0) { }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or AuthenticationException)
        {
            // The peer went away first; it had its chance to read the refusal.
        }
    }

    internal static string DeviceIdOf(X509Certificate2 certificate) =>
        certificate.GetNameInfo(X509NameType.SimpleName, false).Replace("daiko-device-", "", StringComparison.Ordinal);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        _all.CloseAll("the home server is stopping");
        await _acceptLoop;
        await _serving.WhenAll();
    }
}
