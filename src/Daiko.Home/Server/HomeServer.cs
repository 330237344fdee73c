using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Daiko.Cards;
using Daiko.Home.Control;
using Daiko.Home.Delegation;
using Daiko.Home.Devices;
using Daiko.Tls;

namespace Daiko.Home.Server;

/// <summary>Options of a running home server.</summary>
public sealed record HomeServerOptions(string Directory, IPEndPoint Listen)
{
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>How often revocations in the store are picked up (the bound on "refused within one second").</summary>
    public TimeSpan RevocationPoll { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Validator for market chains; default: the roots in DIR/trust, else the system roots.</summary>
    public IServerCertificateValidator? MarketValidator { get; init; }

    public Action<string>? Log { get; init; }

    /// <summary>How often the payment log is mailed (F14).</summary>
    public TimeSpan ReportInterval { get; init; } = TimeSpan.FromDays(1);

    /// <summary>Where the purse lives; default the SQLite home store (PostgreSQL for hosted deployments).</summary>
    public Storage.IHomeStore? PurseStore { get; init; }

    /// <summary>How often appliance readings are collected (F16).</summary>
    public TimeSpan ApplianceCollectInterval { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>
/// The home server (F1-F8): terminals connect over TLS 1.3 with their device certificate; the server
/// gates everything on the home card's state and acts for them towards markets.
/// </summary>
public sealed class HomeServer : IAsyncDisposable
{
    private readonly HomeServerOptions _options;
    private readonly HomeCard _card;
    private readonly HomeIdentity _identity;
    private readonly DeviceRegistry _devices;
    private readonly DelegationService _delegation;
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<ControlConnection, string?> _connections = new();
    private readonly List<Task> _background = new();
    private long _nextRelay;
    private readonly WalletService _wallet;
    private readonly Appliances.ApplianceGateway _appliances;
    private readonly Pim.PimStore _pim;
    private readonly IServerCertificateValidator _marketValidator;

    private HomeServer(HomeServerOptions options, HomeCard card)
    {
        _options = options;
        _card = card;
        _identity = HomeIdentity.LoadOrCreate(options.Directory);
        _devices = new DeviceRegistry(DatabasePath(options.Directory), options.Time);
        var validator = options.MarketValidator ?? MarketTrust.Live(options.Directory, options.Time);
        _marketValidator = validator;
        _delegation = new DelegationService(
            () => _card.CertificateChain.Count == 0
                ? throw new DelegationException(DelegationFailure.CardNotReady, "the home card has no certificate yet: run 'daiko home cert import'")
                : new ClientCredential(_card.CertificateChain, _card.TlsSigner),
            validator,
            new SessionCache<SessionTicket>(options.Time, t => t.Wipe()),
            new MarketProfiles(DatabasePath(options.Directory)),
            options.Time);
        _listener = new TcpListener(options.Listen);
        _wallet = new WalletService(options.Directory, card, options.Time, options.PurseStore);
        _appliances = new Appliances.ApplianceGateway(DatabasePath(options.Directory), time: options.Time);
        _pim = new Pim.PimStore(DatabasePath(options.Directory), options.Time);
    }

    public Appliances.ApplianceGateway Appliances => _appliances;

    /// <summary>Registers a market's or bank's key for e-money messages.</summary>
    public static void AddPayee(string directory, string id, System.Security.Cryptography.ECDsa publicKey) => WalletService.AddPayee(directory, id, publicKey);

    /// <summary>Where the payment log is mailed (DIR/mail.json).</summary>
    public static void SetMail(string directory, Mail.MailSettings settings) => WalletService.SaveMailSettings(directory, settings);

    public Money.PurseLedger Ledger => _wallet.Ledger;

    public static string DatabasePath(string directory) => Path.Combine(directory, "home.db");

    public IPEndPoint LocalEndPoint => (IPEndPoint)_listener.LocalEndpoint;

    public HomeIdentity Identity => _identity;

    public DeviceRegistry Devices => _devices;

    public DelegationService Delegation => _delegation;

    public int OpenConnections => _connections.Count;

    public static HomeServer Start(HomeServerOptions options, HomeCard card)
    {
        var server = new HomeServer(options, card);
        server._listener.Start();
        server._background.Add(server.AcceptLoopAsync());
        server._background.Add(server.RevocationLoopAsync());
        server._background.Add(server._wallet.RunPeriodicReportsAsync(options.ReportInterval, options.Time, server._stop.Token));
        server._background.Add(server._appliances.RunCollectorAsync(options.ApplianceCollectInterval, server._stop.Token));
        return server;
    }

    private void Log(string line) => _options.Log?.Invoke(line);

    /// <summary>Every audited event (unlock, lock, delegation, refusal) also goes to the server log; never a secret.</summary>
    private void Audit(string? deviceId, string action, string? market, string? mode, string outcome)
    {
        _devices.Audit(deviceId, action, market, mode, outcome);
        Log($"device {deviceId ?? "(unknown)"}: {action}{(market is null ? "" : $" {market}")}{(mode is null ? "" : $" ({mode})")}: {outcome}");
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception) when (_stop.IsCancellationRequested) { return; }
            catch (SocketException) { continue; }
            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        client.NoDelay = true;
        var ssl = new SslStream(client.GetStream(), leaveInnerStreamOpen: false);
        try
        {
            using var handshake = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            handshake.CancelAfter(TimeSpan.FromSeconds(15));
            await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificate = _identity.Certificate,
                EnabledSslProtocols = SslProtocols.Tls13,
                ClientCertificateRequired = true,
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            }, handshake.Token);
        }
        catch (Exception e)
        {
            Log($"control handshake failed: {e.GetType().Name}: {e.Message}");
            await ssl.DisposeAsync();
            client.Dispose();
            return;
        }
        string? deviceId = null;
        if (ssl.RemoteCertificate is { } presented)
        {
            using var certificate = new X509Certificate2(presented);
            var device = _identity.Issued(certificate) ? _devices.FindById(DeviceIdOf(certificate)) : null;
            if (device is null || device.Revoked || !device.PublicKeyInfo.AsSpan().SequenceEqual(certificate.PublicKey.ExportSubjectPublicKeyInfo()))
            {
                Audit(device?.Id, "connect", null, null, device?.Revoked == true ? "refused: revoked device" : "refused: unknown device");
                await using var refused = new ControlConnection(ssl);
                try
                {
                    await ControlMessage.WriteFrameAsync(ssl, new ControlMessage("error").Set("re", true)
                        .Set("code", device?.Revoked == true ? "revoked" : "unknown-device")
                        .Set("message", device?.Revoked == true ? "this device was revoked by the home server's owner" : "this device is not enrolled with this home server"), CancellationToken.None);
                }
                catch (Exception) { }
                await DrainBrieflyAsync(ssl);
                return;
            }
            deviceId = device.Id;
        }
        var connection = new ControlConnection(ssl, (m, c) => HandleAsync(m, c, deviceId))
        {
            OnRefusal = (request, code, message) => Log($"device {deviceId ?? "(not enrolled)"}: {request.Type} refused ({code}): {message}"),
        };
        _connections[connection] = deviceId;
        connection.Start();
        try { await connection.Completion; }
        finally
        {
            _connections.TryRemove(connection, out _);
            await connection.DisposeAsync();
        }
    }

    /// <summary>
    /// After a refusal, reads (and drops) what the peer already sent until it closes or two seconds
    /// pass, so that closing does not reset the connection before the peer has read the refusal.
    /// </summary>
    private static async Task DrainBrieflyAsync(Stream stream)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var sink = new byte[4096];
        try
        {
            while (await stream.ReadAsync(sink, deadline.Token) > 0) { }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or System.Security.Authentication.AuthenticationException) { }
    }

    private static string DeviceIdOf(X509Certificate2 certificate) =>
        certificate.GetNameInfo(X509NameType.SimpleName, false).Replace("daiko-device-", "", StringComparison.Ordinal);

    private async Task RevocationLoopAsync()
    {
        using var timer = new PeriodicTimer(_options.RevocationPoll);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                IReadOnlySet<string> revoked;
                try { revoked = _devices.RevokedIds(); }
                catch (Exception) { continue; }
                foreach (var (connection, deviceId) in _connections)
                {
                    if (deviceId is not null && revoked.Contains(deviceId))
                    {
                        connection.Close("this device was revoked");
                        var purged = _delegation.Tickets.PurgeDevice(deviceId);
                        Log($"device {deviceId} revoked: channel closed, {purged} cached secrets purged");
                    }
                }
                foreach (var id in revoked) _delegation.Tickets.PurgeDevice(id);
            }
        }
        catch (OperationCanceledException) { }
    }

    private async Task HandleAsync(ControlMessage m, ControlConnection c, string? deviceId)
    {
        if (m.Type == "enroll")
        {
            await EnrollAsync(m, c, deviceId);
            return;
        }
        if (deviceId is null)
        {
            await c.ReplyErrorAsync(m, "unknown-device", "present a device certificate: enroll this terminal first");
            return;
        }
        switch (m.Type)
        {
            case "unlock": await UnlockAsync(m, c, deviceId); break;
            case "lock":
                _card.Done();
                _delegation.Tickets.PurgeDevice(deviceId);
                Audit(deviceId, "lock", null, null, "remote-access-wait");
                await c.ReplyAsync(m, new ControlMessage("locked").Set("state", StateName(_card.State)));
                break;
            case "card-status":
                var status = _card.GetStatus();
                await c.ReplyAsync(m, new ControlMessage("card-status").Set("state", StateName(status.State))
                    .Set("pin1_tries_left", status.Pin1TriesLeft).Set("pin2_tries_left", status.Pin2TriesLeft));
                break;
            case "delegate": await DelegateAsync(m, c, deviceId); break;
            case "prefetch": await PrefetchAsync(m, c, deviceId); break;
            case "sign": await SignAsync(m, c, deviceId); break;
            case "verify-chain": await VerifyChainAsync(m, c); break;
            case "appliance-list":
            case "appliance-state":
            case "appliance-command":
            case "appliance-readings":
                if (await RequireReadyAsync(m, c)) await ApplianceAsync(m, c, deviceId);
                break;
            case "pim-sync":
                if (await RequireReadyAsync(m, c)) await PimSyncAsync(m, c);
                break;
            case var wallet when wallet.StartsWith("wallet-", StringComparison.Ordinal):
                await _wallet.HandleAsync(m, c, () => RequireReadyAsync(m, c));
                Audit(deviceId, m.Type, null, null, "handled");
                break;
            default:
                await c.ReplyErrorAsync(m, "unknown-request", $"the home server does not know request '{m.Type}'");
                break;
        }
    }

    public static string StateName(HomeCardState state) => state switch
    {
        HomeCardState.Locked => "locked",
        HomeCardState.RemoteAccessWait => "remote-access-wait",
        HomeCardState.CryptoReady => "crypto-ready",
        _ => "disabled",
    };

    private async Task EnrollAsync(ControlMessage m, ControlConnection c, string? deviceId)
    {
        if (deviceId is not null)
        {
            await c.ReplyErrorAsync(m, "already-enrolled", "this device is already enrolled");
            return;
        }
        var spki = m.GetBytes("device_spki");
        try
        {
            using var probe = ECDsa.Create();
            probe.ImportSubjectPublicKeyInfo(spki, out _);
        }
        catch (CryptographicException)
        {
            await c.ReplyErrorAsync(m, "bad-key", "the device public key is not a valid EC key");
            return;
        }
        var (outcome, name) = _devices.RedeemCode(m.GetString("secret"));
        if (outcome != EnrollmentOutcome.Enrolled)
        {
            Audit(null, "enroll", null, null, $"refused: {outcome}");
            await c.ReplyErrorAsync(m, "enrollment-refused", outcome switch
            {
                EnrollmentOutcome.ExpiredCode => "the enrollment code has expired; ask for a new one with 'daiko home device add'",
                EnrollmentOutcome.UsedCode => "the enrollment code was already used",
                EnrollmentOutcome.TooManyAttempts => "too many wrong enrollment codes; wait a minute",
                _ => "the enrollment code is not valid",
            });
            return;
        }
        var device = _devices.Register(name!, spki);
        using var certificate = _identity.IssueDeviceCertificate(device.Id, spki);
        Audit(device.Id, "enroll", null, null, "enrolled");
        Log($"device '{device.Name}' ({device.Id}) enrolled");
        await c.ReplyAsync(m, new ControlMessage("enrolled").Set("device_id", device.Id).Set("name", device.Name)
            .Set("certificate", certificate.RawData).Set("home_certificate", _identity.Certificate.RawData));
    }

    private async Task UnlockAsync(ControlMessage m, ControlConnection c, string deviceId)
    {
        // Both PINs are checked on every unlock, also when another terminal already unlocked the card.
        var first = _card.EnterPin1(m.GetString("pin1"));
        if (!first.Accepted)
        {
            Audit(deviceId, "unlock", null, null, first.Outcome == PinOutcome.Disabled ? "card disabled" : "wrong PIN1");
            await c.ReplyErrorAsync(m, first.Outcome == PinOutcome.Disabled ? "card-disabled" : "wrong-pin1", first.Message, first.TriesLeft);
            return;
        }
        var second = _card.EnterPin2(m.GetString("pin2"));
        if (!second.Accepted)
        {
            Audit(deviceId, "unlock", null, null, second.Outcome == PinOutcome.Disabled ? "card disabled" : "wrong PIN2");
            await c.ReplyErrorAsync(m, second.Outcome switch { PinOutcome.Disabled => "card-disabled", PinOutcome.WrongState => "card-locked", _ => "wrong-pin2" }, second.Message, second.TriesLeft);
            return;
        }
        Audit(deviceId, "unlock", null, null, "crypto-ready");
        try
        {
            // A purse from before the card's seal is sealed once here, after its log verifies.
            _wallet.Ledger.SealIfUnsealed();
        }
        catch (Cards.Purse.PurseException e)
        {
            Log($"the purse is not sealed: {e.Message}");
        }
        await c.ReplyAsync(m, new ControlMessage("unlocked").Set("state", StateName(_card.State)));
    }

    private async Task<bool> RequireReadyAsync(ControlMessage m, ControlConnection c)
    {
        var state = _card.State;
        if (state == HomeCardState.CryptoReady) return true;
        await c.ReplyErrorAsync(m, state == HomeCardState.Disabled ? "card-disabled" : "card-not-ready", state switch
        {
            HomeCardState.Disabled => "the home card is disabled after 3 wrong PINs; it must be unblocked with the admin code",
            HomeCardState.Locked => "the home card is locked: run 'daiko terminal unlock' (PIN1 and PIN2)",
            _ => "the home card waits for PIN2: run 'daiko terminal unlock'",
        });
        return false;
    }

    /// <summary>Fetch tickets ahead of need: at least "min" ready for (device, market); min 0 only reports.</summary>
    private async Task PrefetchAsync(ControlMessage m, ControlConnection c, string deviceId)
    {
        if (!await RequireReadyAsync(m, c)) return;
        var market = new MarketRequest(m.GetString("host"), (int)m.GetInt("port"), m.GetStringOrNull("sni"), m.GetStringOrNull("alpn"));
        var wanted = (int)Math.Clamp(m.Has("min") ? m.GetInt("min") : 1, 0, 8);
        try
        {
            _card.Touch();
            var (ready, handshakes) = await _delegation.PrefetchAsync(deviceId, market, wanted, c.Closed);
            if (handshakes > 0) Audit(deviceId, "prefetch", $"{market.Host}:{market.Port}", "resume", $"{ready} ticket(s) ready");
            await c.ReplyAsync(m, new ControlMessage("prefetched").Set("ready", ready).Set("handshakes", handshakes));
        }
        catch (DelegationException e)
        {
            Audit(deviceId, "prefetch", $"{market.Host}:{market.Port}", "resume", "failed: " + e.Failure);
            await c.ReplyErrorAsync(m, e.Failure == DelegationFailure.NoTicketIssued ? "no-ticket" : "market-failed", e.Message);
        }
    }

    private async Task DelegateAsync(ControlMessage m, ControlConnection c, string deviceId)
    {
        if (!await RequireReadyAsync(m, c)) return;
        var market = new MarketRequest(m.GetString("host"), (int)m.GetInt("port"), m.GetStringOrNull("sni"), m.GetStringOrNull("alpn"));
        var mode = m.GetString("mode");
        var where = $"{market.Host}:{market.Port}";
        try
        {
            _card.Touch();
            switch (mode)
            {
                case "resume":
                {
                    var ticket = await _delegation.ObtainTicketAsync(deviceId, market, c.Closed);
                    Audit(deviceId, "delegate", where, mode, "ticket handed over");
                    await c.ReplyAsync(m, new ControlMessage("ticket").Set("ticket", ticket.ToCbor()));
                    ticket.Wipe();
                    _delegation.RefillAhead(deviceId, market, log: Log);
                    break;
                }
                case "handoff":
                {
                    var connection = await _delegation.ConnectAsUserAsync(market, null, c.Closed);
                    // Absorb the tickets markets send right after the handshake (they go to the cache,
                    // not the terminal). Waiting is for the cache only: whatever arrives later, or was
                    // read but not yet processed, goes over with the export and the terminal handles it.
                    for (var i = 0; i < 2; i++)
                    {
                        var t = await connection.WaitForTicketAsync(TimeSpan.FromMilliseconds(i == 0 ? 100 : 30), c.Closed);
                        if (t is null) break;
                        _delegation.Tickets.Add(market.KeyFor(deviceId), t, t.ExpiresAt, singleUse: true);
                    }
                    var transport = connection.Transport;
                    var exported = connection.Export();
                    var relayId = Interlocked.Increment(ref _nextRelay);
                    var relay = c.OpenRelay(relayId);
                    Audit(deviceId, "delegate", where, mode, "secrets handed over");
                    await c.ReplyAsync(m, new ControlMessage("secrets").Set("session", exported.ToCbor()).Set("relay", relayId));
                    exported.Wipe();
                    _ = SpliceAsync(relay, transport);
                    break;
                }
                case "relay":
                {
                    var connection = await _delegation.ConnectAsUserAsync(market, null, c.Closed);
                    var relayId = Interlocked.Increment(ref _nextRelay);
                    var relay = c.OpenRelay(relayId);
                    Audit(deviceId, "delegate", where, mode, "relay opened");
                    await c.ReplyAsync(m, new ControlMessage("relay").Set("relay", relayId));
                    _ = SpliceAsync(relay, connection);
                    break;
                }
                case "assist":
                    Audit(deviceId, "delegate", where, mode, "assist ready");
                    await c.ReplyAsync(m, new ControlMessage("assist").Set("chain", _card.CertificateChain.ToList()));
                    break;
                default:
                    await c.ReplyErrorAsync(m, "bad-mode", $"unknown delegation mode '{mode}'");
                    break;
            }
        }
        catch (DelegationException e)
        {
            Audit(deviceId, "delegate", where, mode, $"failed: {e.Failure}");
            await c.ReplyErrorAsync(m, e.Failure switch
            {
                DelegationFailure.MarketUnreachable => "market-unreachable",
                DelegationFailure.MarketCertificateRejected => "market-certificate",
                DelegationFailure.NoTicketIssued => "no-ticket",
                DelegationFailure.CardNotReady => "card-not-ready",
                _ => "handshake-failed",
            }, e.Message);
        }
        catch (CardNotReadyException e)
        {
            await c.ReplyErrorAsync(m, "card-not-ready", e.Message);
        }
    }

    /// <summary>Pumps bytes between a relay channel and a stream until either side ends.</summary>
    private static async Task SpliceAsync(RelayStream relay, Stream other)
    {
        using var done = new CancellationTokenSource();
        var up = Pump(relay, other);
        var down = Pump(other, relay);
        var first = await Task.WhenAny(up, down);
        await done.CancelAsync();
        // A market stream that failed or was cut (no close_notify) reaches the terminal as a cut relay.
        if (first == down && !down.Result) relay.Abort();
        await relay.DisposeAsync();
        await other.DisposeAsync();

        async Task<bool> Pump(Stream from, Stream to)
        {
            var buffer = new byte[16384];
            try
            {
                while (true)
                {
                    var n = await from.ReadAsync(buffer, done.Token);
                    if (n == 0) return true;
                    await to.WriteAsync(buffer.AsMemory(0, n), done.Token);
                    await to.FlushAsync(done.Token);
                }
            }
            catch (Exception)
            {
                return false;
            }
        }
    }

    private static readonly byte[] ClientVerifyPrefix = BuildPrefix();

    private static byte[] BuildPrefix()
    {
        var context = Encoding.ASCII.GetBytes("TLS 1.3, client CertificateVerify");
        return [.. Enumerable.Repeat((byte)0x20, 64), .. context, 0];
    }

    private async Task SignAsync(ControlMessage m, ControlConnection c, string deviceId)
    {
        if (!await RequireReadyAsync(m, c)) return;
        var content = m.GetBytes("content");
        // The card signs only TLS 1.3 client CertificateVerify content, or a whole TLS 1.2 handshake that
        // this server parsed and checked itself (a TLS 1.2 CertificateVerify has no context string); never
        // arbitrary data.
        var tls13 = content.Length is >= 64 + 34 + 32 and <= 64 + 34 + 64 && content.AsSpan().StartsWith(ClientVerifyPrefix);
        var refusal = tls13 ? null : await Daiko.Tls.Tls12.AssistTranscript12.CheckAsync(content, (SignatureScheme)m.GetInt("scheme"), _card.CertificateChain, _marketValidator, c.Closed);
        if (refusal is not null)
        {
            Audit(deviceId, "sign", null, "assist", "refused: not CertificateVerify content");
            await c.ReplyErrorAsync(m, "bad-content", $"the home card signs only TLS 1.3 client CertificateVerify content or a TLS 1.2 handshake it checked: {refusal}");
            return;
        }
        try
        {
            var signature = await _card.TlsSigner.SignAsync((SignatureScheme)m.GetInt("scheme"), content, c.Closed);
            Audit(deviceId, "sign", null, "assist", "signed");
            await c.ReplyAsync(m, new ControlMessage("signature").Set("signature", signature));
        }
        catch (Exception e) when (e is NotSupportedException or CardNotReadyException)
        {
            await c.ReplyErrorAsync(m, "sign-failed", e.Message);
        }
    }

    /// <summary>F16: remote control of, and readings from, home appliances; only the home server reaches them.</summary>
    private async Task ApplianceAsync(ControlMessage m, ControlConnection c, string deviceId)
    {
        if (m.Type == "appliance-list")
        {
            await c.ReplyAsync(m, new ControlMessage("appliances").Set("names", _appliances.List().Select(a => a.Name).ToList()));
            return;
        }
        var name = m.GetString("name");
        if (m.Type == "appliance-readings")
        {
            await c.ReplyAsync(m, new ControlMessage("appliance-readings").Set("readings",
                _appliances.Readings(name, (int)Math.Clamp(m.Has("limit") ? m.GetInt("limit") : 20, 1, 1000)).Select(r => $"{r.At:O} {r.State}").ToList()));
            return;
        }
        var result = m.Type == "appliance-command"
            ? await _appliances.SendCommandAsync(name, m.GetString("command"),
                m.GetList("arguments").OfType<List<object?>>().ToDictionary(p => (string)p[0]!, p => (string)p[1]!), c.Closed)
            : await _appliances.GetStateAsync(name, c.Closed);
        Audit(deviceId, m.Type, name, null, result.Outcome.ToString());
        if (result.Outcome != Daiko.Home.Appliances.ApplianceOutcome.Done)
        {
            await c.ReplyErrorAsync(m, "appliance-" + result.Outcome.ToString().ToLowerInvariant(), result.Reason ?? "the appliance did not do it");
            return;
        }
        await c.ReplyAsync(m, new ControlMessage("appliance-state").Set("state", result.State));
    }

    /// <summary>F17: two-way PIM sync.</summary>
    private async Task PimSyncAsync(ControlMessage m, ControlConnection c)
    {
        var changes = m.GetList("changes").OfType<List<object?>>().Select(x => new Pim.PimChange(
            (string)x[0]!, Enum.Parse<Pim.PimKind>((string)x[1]!, ignoreCase: true), (long)x[2]!, (bool)x[3]!, (string?)x[4] ?? "")).ToList();
        var result = _pim.Sync(m.GetInt("since"), changes);
        await c.ReplyAsync(m, new ControlMessage("pim-synced").Set("revision", result.Revision)
            .Set("results", result.Results.Select(r => (object)new List<object?> { r.Id, r.Outcome.ToString().ToLowerInvariant(), r.Reason, r.Current?.Version ?? 0 }).ToList())
            .Set("changes", result.Changes.Select(i => (object)new List<object?> { i.Id, i.Kind.ToString().ToLowerInvariant(), i.Version, i.Deleted, i.Body }).ToList()));
    }

    private async Task VerifyChainAsync(ControlMessage m, ControlConnection c)
    {
        var chain = m.GetList("chain").OfType<byte[]>().ToList();
        var verdict = await _marketValidator.ValidateAsync(m.GetStringOrNull("host"), chain, c.Closed);
        await c.ReplyAsync(m, new ControlMessage("verdict").Set("trusted", verdict.Trusted).Set("problem", verdict.Problem.ToString()).Set("reason", verdict.Reason));
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        foreach (var connection in _connections.Keys) connection.Close("the home server is stopping");
        try { await Task.WhenAll(_background); } catch (Exception) { }
        _appliances.Dispose();
        _identity.Dispose();
    }
}

/// <summary>Trust roots for market chains: DIR/trust/*.pem if any, else the system roots.</summary>
public static class MarketTrust
{
    public static IServerCertificateValidator Load(string directory)
    {
        var files = TrustFiles(directory);
        return files.Length == 0 ? new X509ChainValidator() : X509ChainValidator.FromPemFiles(files);
    }

    /// <summary>
    /// The validator a running home server uses: verdicts cached per chain (<see cref="CachingCertificateValidator"/>),
    /// and the roots reloaded, with the cache dropped, within a second of <c>daiko home trust add</c> changing them.
    /// </summary>
    public static IServerCertificateValidator Live(string directory, TimeProvider? time = null) => new LiveTrust(directory, time);

    private static string[] TrustFiles(string directory)
    {
        var trust = Path.Combine(directory, "trust");
        return Directory.Exists(trust) ? Directory.GetFiles(trust, "*.pem").Order(StringComparer.Ordinal).ToArray() : [];
    }

    /// <summary>Looks at the trust directory at most once a second, not on every handshake.</summary>
    private sealed class LiveTrust(string directory, TimeProvider? time) : IServerCertificateValidator
    {
        private static readonly TimeSpan RecheckAfter = TimeSpan.FromSeconds(1);
        private readonly Lock _gate = new();
        private readonly TimeProvider _time = time ?? TimeProvider.System;
        private string? _fingerprint;
        private DateTimeOffset _checkedAt;
        private CachingCertificateValidator? _current;

        public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
        {
            CachingCertificateValidator current;
            lock (_gate)
            {
                var now = _time.GetUtcNow();
                if (_current is null || now - _checkedAt >= RecheckAfter)
                {
                    var fingerprint = string.Join('|', TrustFiles(directory).Select(f => $"{Path.GetFileName(f)}:{File.GetLastWriteTimeUtc(f).Ticks}"));
                    if (_current is null || fingerprint != _fingerprint)
                    {
                        _current = new CachingCertificateValidator(Load(directory), time: _time);
                        _fingerprint = fingerprint;
                    }
                    _checkedAt = now;
                }
                current = _current;
            }
            return current.ValidateAsync(serverName, chain, cancellationToken);
        }
    }

    /// <summary>Trusts the CA certificates in <paramref name="pemFile"/>; refuses the whole file if one is not a CA.</summary>
    public static void Add(string directory, string pemFile)
    {
        var trust = Path.Combine(directory, "trust");
        var collection = new X509Certificate2Collection();
        collection.ImportFromPemFile(pemFile);
        if (collection.Count == 0) throw new InvalidDataException($"no certificate in {pemFile}");
        if (collection.FirstOrDefault(c => c.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is not { CertificateAuthority: true }) is { } leaf)
        {
            throw new InvalidDataException($"{leaf.Subject} in {pemFile} is not a CA certificate (no basicConstraints CA:TRUE); trust the CA that issued it instead");
        }
        Directory.CreateDirectory(trust);
        foreach (var cert in collection)
        {
            File.WriteAllText(Path.Combine(trust, cert.Thumbprint.ToLowerInvariant() + ".pem"), cert.ExportCertificatePem());
        }
    }

    /// <summary>The roots added with <see cref="Add"/>: SHA-1 thumbprint (lower case), subject, expiry.</summary>
    public static IReadOnlyList<(string Thumbprint, string Subject, DateTime NotAfter)> List(string directory) =>
        TrustFiles(directory).Select(f =>
        {
            using var cert = X509Certificate2.CreateFromPem(File.ReadAllText(f));
            return (Path.GetFileNameWithoutExtension(f), cert.Subject, cert.NotAfter.ToUniversalTime());
        }).ToList();

    /// <summary>Stops trusting the root with this thumbprint (or a unique prefix of at least 8 characters); false if none matches.</summary>
    public static bool Remove(string directory, string thumbprint)
    {
        var matches = TrustFiles(directory).Where(f => thumbprint.Length >= 8 && Path.GetFileNameWithoutExtension(f).StartsWith(thumbprint.ToLowerInvariant(), StringComparison.Ordinal)).ToList();
        if (matches.Count != 1) return false;
        File.Delete(matches[0]);
        return true;
    }
}
