using System.Net;
using Daiko.Cards;
using Daiko.Home.Appliances;
using Daiko.Home.Authority;
using Daiko.Home.Control;
using Daiko.Home.Delegation;
using Daiko.Home.Devices;
using Daiko.Home.Handlers;
using Daiko.Home.Mail;
using Daiko.Home.Money;
using Daiko.Home.Pim;
using Daiko.Home.Trust;
using Daiko.Tls;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Daiko.Home.Hosting;

/// <summary>Options of a running home server.</summary>
public sealed record HomeServerOptions(string Directory, IPEndPoint Listen)
{
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>How often revocations in the store are picked up (the bound on "refused within one second").</summary>
    public TimeSpan RevocationPoll { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Validator for market chains; default: the roots in DIR/trust, else the system roots.</summary>
    public IServerCertificateValidator? MarketValidator { get; init; }

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    /// <summary>How often the payment log is mailed (F14).</summary>
    public TimeSpan ReportInterval { get; init; } = TimeSpan.FromDays(1);

    /// <summary>Where all home state lives (devices, audit, purse, PIM, …); default the SQLite home.db in <see cref="Directory"/>, PostgreSQL for hosted deployments.</summary>
    public Storage.IHomeStore? Store { get; init; }

    /// <summary>How often the declared payees are re-read (the bound on "a payee change applies within one second").</summary>
    public TimeSpan PayeePoll { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Lets every device reach markets on private and loopback addresses (<c>home serve --allow-private-markets</c>: labs and tests).</summary>
    public bool AllowPrivateMarkets { get; init; }

    /// <summary>Fetches an intermediate a market left out of its chain, by its http AIA URL, from public addresses only (<c>home serve --fetch-missing-intermediates</c>).</summary>
    public bool FetchMissingIntermediates { get; init; }

    /// <summary>Terminals connect through a load balancer that sends a PROXY protocol v2 header first (<c>home serve --proxy-protocol</c>).</summary>
    public bool ProxyProtocol { get; init; }

    /// <summary>Where the devices' unlock sessions live; default the SQLite home store (PostgreSQL for hosted deployments).</summary>
    public Storage.IDeviceSessionStore? DeviceSessions { get; init; }

    /// <summary>A device's session ends after this long without use (each device has its own timer).</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>The control listener's limits on connections and on strangers' handshakes and silence.</summary>
    public PeerLimits PeerLimits { get; init; } = new();

    /// <summary>The longest a handshake with a market may take, as the user.</summary>
    public TimeSpan MarketTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// A relayed or handed-over connection ends after this long with no byte either way (it is also cut
    /// when the device's session ends). A quiet market is not a broken one: this is the only read bound on a relay.
    /// </summary>
    public TimeSpan RelayIdleLimit { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>How often appliance readings are collected (F16).</summary>
    public TimeSpan ApplianceCollectInterval { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>
/// The home server (F1-F8), composed: terminals connect over TLS 1.3 with their device certificate
/// (<see cref="ControlListener"/>); the server gates everything on the home card's state and acts for
/// them towards markets (<see cref="RequestDispatcher"/> and its handlers). This type only builds the
/// parts and owns their lifetime.
/// </summary>
public sealed class HomeServer : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _background = new();
    private readonly ControlListener _listener;
    private readonly Splicer _splicer;
    private readonly PaymentReports _reports;
    private readonly ServeLock _serveLock;
    private readonly HomeStateWatcher _stateWatcher;
    private readonly PolicyWatcher _policyWatcher;
    private readonly IDisposable _gauges;
    private readonly IssuerFetcher? _issuers;
    private readonly ILogger _logger;

    private HomeServer(HomeServerOptions options, HomeCard card, ServeLock serveLock)
    {
        _serveLock = serveLock;
        var logger = _logger = options.LoggerFactory.CreateLogger("Daiko.Home");
        Store = options.Store ?? Storage.HomeStore.Sqlite(DatabasePath(options.Directory));
        Identity = HomeIdentity.LoadOrCreate(options.Directory);
        Devices = new DeviceRegistry(Store, options.Time)
        {
            // Every audited event (unlock, lock, delegation, refusal) also goes to the server log; never a secret.
            Audited = (device, action, market, mode, outcome) =>
            {
                logger.Audited(device ?? "(unknown)", action, market is null ? "" : $" {market}", mode is null ? "" : $" ({mode})", outcome);
                HomeMetrics.Audited(action, mode, outcome);
            },
        };
        _issuers = options.FetchMissingIntermediates ? new IssuerFetcher(logger, options.AllowPrivateMarkets, options.Time) : null;
        var validator = options.MarketValidator ?? MarketTrust.Live(options.Directory, options.Time, _issuers);
        Delegation = new DelegationService(
            () => card.CertificateChain.Count == 0
                ? throw new DelegationException(DelegationFailure.CardNotReady, "the home card has no certificate yet: run 'daiko home cert import'")
                : new ClientCredential(card.CertificateChain, card.TlsSigner),
            validator,
            new SessionCache<SessionTicket>(options.Time, t => t.Wipe(), t => t.Identity.Length + t.Psk.Length + t.Nonce.Length + 256),
            new MarketProfiles(Store.MarketProfiles),
            options.Time,
            marketTimeout: options.MarketTimeout,
            logger: logger);
        Payees = new PayeeDirectory(options.Directory, new Storage.SqlPayeeStore(Store), logger);
        Ledger = new PurseLedger(Store, new HomeCardPurse(card), Payees.KeyOf, options.Time);
        _reports = new PaymentReports(options.Directory, card, Ledger, new ReportOutbox(Store.MailOutbox, options.Time), logger);
        Appliances = new ApplianceGateway(Store.Appliances, time: options.Time);
        _splicer = new Splicer(logger, options.RelayIdleLimit);
        Connections = new ConnectionRegistry();
        Policies = new Policy.DevicePolicies(new Storage.SqlDevicePolicyStore(Store),
            async (id, ct) => (await Devices.FindByIdAsync(id, ct))?.Name, options.Time, options.AllowPrivateMarkets);
        var gate = new CardGate(card);
        var grants = new AssistGrants(options.Time);
        Authority = new DeviceAuthority(options.DeviceSessions ?? new Storage.SqlDeviceSessionStore(Store), gate, options.Time, options.IdleTimeout)
        {
            // The device's stocked tickets were handed out under the session that ended (lock, idle, the card
            // leaving crypto-ready): its agents drop them now, before a lock is answered; other devices keep theirs.
            Ended = async (device, reason) =>
            {
                await Devices.AuditAsync(device, "session-end", null, null, reason);
                await Connections.NotifyDeviceAsync(device, new Daiko.Protocol.Messages.DropTicketsNotice($"this device's unlock session ended ({reason})"));
            },
        };
        var handlers = new HomeHandlers(
            gate,
            Authority,
            new EnrollmentHandler(Devices, Identity, logger),
            new CardHandler(gate, Authority, grants, Devices, Delegation.Tickets, Ledger, logger),
            new DelegationHandler(gate, Delegation, Devices, _splicer, Policies, Authority, grants),
            new AssistHandler(gate, Devices, validator, grants, Policies),
            new ApplianceHandler(Appliances, Devices, Policies),
            new PimHandler(new PimStore(Store, options.Time)),
            new WalletHandler(Ledger, _reports, gate, Devices, Policies),
            Policies);
        _listener = new ControlListener(options.Listen, Identity, Devices, Connections, new RequestDispatcher(handlers), logger, options.PeerLimits)
        {
            ProxyProtocol = options.ProxyProtocol,
        };
        Revocations = new RevocationWatcher(Devices, Connections, Delegation.Tickets, options.Time, logger);
        _policyWatcher = new PolicyWatcher(Policies, Connections, options.Time, logger);
        _stateWatcher = new HomeStateWatcher(card, Authority, grants, Devices, options.Time, logger);
        Card = card;
        _gauges = HomeMetrics.Gauges(() => Connections.Count, card);
    }

    public static string DatabasePath(string directory) => Path.Combine(directory, "home.db");

    /// <summary>Declares a market or bank (its role and key) for e-money messages.</summary>
    public static Task AddPayeeAsync(string directory, string name, Storage.PayeeRole role, System.Security.Cryptography.ECDsa publicKey) =>
        PayeeDirectory.AddAsync(directory, name, role, publicKey);

    /// <summary>Where the payment log is mailed (DIR/mail.json).</summary>
    public static void SetMail(string directory, MailSettings settings) => PaymentReports.SaveSettings(directory, settings);

    public ApplianceGateway Appliances { get; }

    public HomeCard Card { get; }

    /// <summary>All of the home server's state.</summary>
    public Storage.IHomeStore Store { get; }

    public PurseLedger Ledger { get; }

    /// <summary>The markets and banks this server knows, re-read while it runs.</summary>
    public PayeeDirectory Payees { get; }

    public IPEndPoint LocalEndPoint => _listener.LocalEndPoint;

    public HomeIdentity Identity { get; }

    public DeviceRegistry Devices { get; }

    public DelegationService Delegation { get; }

    /// <summary>The owner's device policies as this server applies them.</summary>
    public Policy.DevicePolicies Policies { get; }

    public ConnectionRegistry Connections { get; }

    /// <summary>The devices' own unlock sessions and their live work.</summary>
    public DeviceAuthority Authority { get; }

    private RevocationWatcher Revocations { get; }

    public int OpenConnections => Connections.Count;

    /// <summary>Starts serving; <see cref="HomeAlreadyServingException"/> when another home server holds DIR.</summary>
    public static HomeServer Start(HomeServerOptions options, HomeCard card)
    {
        var serveLock = ServeLock.Acquire(options.Directory);
        HomeServer server;
        try
        {
            server = new HomeServer(options, card, serveLock);
            // The card starts locked: sessions a previous run left in the store are over.
            Task.Run(() => server.Authority.EndAllAsync("the home server started")).GetAwaiter().GetResult();
            server.Payees.RefreshAsync(CancellationToken.None).GetAwaiter().GetResult();
            server._listener.Start();
        }
        catch
        {
            serveLock.Dispose();
            throw;
        }
        server._background.Add(server.Payees.RunAsync(options.PayeePoll, options.Time, server._stop.Token));
        server._background.Add(server.Revocations.RunAsync(options.RevocationPoll, server._stop.Token));
        server._background.Add(server._stateWatcher.RunAsync(options.RevocationPoll, server._stop.Token));
        server._background.Add(server._policyWatcher.RunAsync(PolicyWatcher.Poll, server._stop.Token));
        server._background.Add(server._reports.RunAsync(options.ReportInterval, options.Time, server._stop.Token));
        server._background.Add(server.Appliances.RunCollectorAsync(options.ApplianceCollectInterval, server._stop.Token));
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _listener.DisposeAsync();
        // The card is locked from here on: the devices' sessions end now, in the store too (audited).
        try { await Authority.EndAllAsync("the home server stopped"); }
        catch (Exception e) when (e is System.Data.Common.DbException or IOException or InvalidOperationException or TimeoutException) { _logger.SessionsNotEnded(e.Message); }
        await Task.WhenAll(_background);
        await _splicer.DisposeAsync();
        await Delegation.DisposeAsync();
        Appliances.Dispose();
        _gauges.Dispose();
        _issuers?.Dispose();
        Identity.Dispose();
        _serveLock.Dispose();
    }
}
