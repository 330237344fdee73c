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

    /// <summary>
    /// Where the tickets each device holds are counted (its policy's max-tickets). Null: in the store when it is PostgreSQL
    /// (several processes may serve the owner's devices: a hosted deployment's nodes, a home's), else in this process's memory.
    /// </summary>
    public Policy.ITicketHoldings? TicketHoldings { get; init; }

    /// <summary>
    /// Turns for the full handshakes with markets, when they must be shared beyond these parts: a hosted node's
    /// owners share its cores, so they share one. Null: sized to this machine (<see cref="Delegation.MarketHandshakeTurns.ForThisMachine"/>).
    /// </summary>
    public Delegation.MarketHandshakeTurns? MarketHandshakes { get; init; }

    /// <summary>What the owner's PIM store holds at most (items, deleted ones' marks included, and the UTF-8 bytes of their bodies).</summary>
    public Pim.PimLimits PimLimits { get; init; } = Pim.PimLimits.Default;

    /// <summary>Where the payment log is mailed, read at each mail (a hosted owner's row); default DIR/mail.json.</summary>
    public Func<Mail.MailSettings?>? MailSettings { get; init; }

    /// <summary>Terminals connect through a load balancer that sends a PROXY protocol v2 header first (<c>home serve --proxy-protocol</c>).</summary>
    public bool ProxyProtocol { get; init; }

    /// <summary>The balancers whose PROXY headers are believed (<c>home serve --proxy-from</c>; default loopback).</summary>
    public Control.ProxySources ProxyFrom { get; init; } = Control.ProxySources.Loopback;

    /// <summary>Where the devices' unlock sessions live; default the SQLite home store (PostgreSQL for hosted deployments).</summary>
    public Storage.IDeviceSessionStore? DeviceSessions { get; init; }

    /// <summary>A device's session ends after this long without use (each device has its own timer).</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>The control listener's limits on connections and on strangers' handshakes and silence.</summary>
    public PeerLimits PeerLimits { get; init; } = new();

    /// <summary>The control protocol versions terminals may speak, the preferred first (fewer only to stand in for an older home server).</summary>
    public IReadOnlyList<string> ControlVersions { get; init; } = Daiko.Protocol.ControlProtocol.Versions;

    /// <summary>The longest a handshake with a market may take, as the user.</summary>
    public TimeSpan MarketTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// After a market's first ticket, how long the home server waits for the next one of the same flight
    /// (a terminal that missed the cache has its ticket already; the rest go to the cache).
    /// </summary>
    public TimeSpan TicketFlightWait { get; init; } = Delegation.DelegationService.DefaultFlightWait;

    /// <summary>How long a market's learned flight size is trusted (zero: every fetch waits its flight out).</summary>
    public TimeSpan TicketFlightRelearn { get; init; } = Delegation.DelegationService.FlightRelearn;

    /// <summary>
    /// On a handoff, how long the terminal's reply waits for the market's first ticket (it goes to the
    /// cache). No wait at all when the cache would not keep it or the market is known to send none.
    /// </summary>
    public TimeSpan HandoffTicketWait { get; init; } = Delegation.DelegationService.DefaultHandoffTicketWait;

    /// <summary>
    /// A relayed or handed-over connection ends after this long with no byte either way (it is also cut
    /// when the device's session ends). A quiet market is not a broken one: this is the only read bound on a relay.
    /// </summary>
    public TimeSpan RelayIdleLimit { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Relayed or handed-over sessions one device may have open at once (each holds a market connection).</summary>
    public int MaxRelaysPerDevice { get; init; } = Delegation.Splicer.DefaultMaxPerDevice;

    /// <summary>How long the audit log keeps its lines, and how often it is pruned.</summary>
    public Storage.AuditRetention AuditRetention { get; init; } = Storage.AuditRetention.Default;

    /// <summary>How often appliance readings are collected (F16).</summary>
    public TimeSpan ApplianceCollectInterval { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Where mail.json and legacy payee files are read; default <see cref="Directory"/> (a hosted owner's folder in the site).</summary>
    public string? WalletDirectory { get; init; }
}

/// <summary>
/// The home server (F1-F8), composed: terminals connect over TLS 1.3 with their device certificate
/// (<see cref="ControlListener"/>); the server gates everything on the home card's state and acts for
/// them towards markets (<see cref="RequestDispatcher"/> and its handlers, in <see cref="HomeParts"/>).
/// This type only builds the parts and owns their lifetime.
/// </summary>
public sealed class HomeServer : IAsyncDisposable
{
    private readonly ControlListener _listener;
    private readonly ServeLock _serveLock;
    private readonly HomeParts _parts;
    private readonly ILogger _logger;

    private HomeServer(HomeServerOptions options, HomeCard card, ServeLock serveLock)
    {
        _serveLock = serveLock;
        _parts = new HomeParts(options, card, HomeIdentity.LoadOrCreate(options.Directory));
        _listener = new ControlListener(options.Listen, _parts.Identity, _parts.Devices, _parts.Connections, _parts.Dispatcher, _logger = options.LoggerFactory.CreateLogger("Daiko.Home"), options.PeerLimits)
        {
            ProxyProtocol = options.ProxyProtocol,
            ProxyFrom = options.ProxyFrom,
            Versions = options.ControlVersions,
        };
        Card = card;
    }

    public static string DatabasePath(string directory) => Path.Combine(directory, "home.db");

    /// <summary>Declares a market or bank (its role and key) for e-money messages.</summary>
    public static Task AddPayeeAsync(string directory, string name, Storage.PayeeRole role, System.Security.Cryptography.ECDsa publicKey) =>
        PayeeDirectory.AddAsync(directory, name, role, publicKey);

    /// <summary>Where the payment log is mailed (DIR/mail.json).</summary>
    public static void SetMail(string directory, MailSettings settings) => PaymentReports.SaveSettings(directory, settings);

    public ApplianceGateway Appliances => _parts.Appliances;

    public HomeCard Card { get; }

    /// <summary>All of the home server's state.</summary>
    public Storage.IHomeStore Store => _parts.Store;

    public PurseLedger Ledger => _parts.Ledger;

    /// <summary>The markets and banks this server knows, re-read while it runs.</summary>
    public PayeeDirectory Payees => _parts.Payees;

    public IPEndPoint LocalEndPoint => _listener.LocalEndPoint;

    public HomeIdentity Identity => _parts.Identity;

    public DeviceRegistry Devices => _parts.Devices;

    public DelegationService Delegation => _parts.Delegation;

    /// <summary>The owner's device policies as this server applies them.</summary>
    public Policy.DevicePolicies Policies => _parts.Policies;

    /// <summary>The relayed and handed-over sessions running, and each device's places.</summary>
    public Delegation.Splicer Splices => _parts.Splices;

    public ConnectionRegistry Connections => _parts.Connections;

    /// <summary>The devices' own unlock sessions and their live work.</summary>
    public DeviceAuthority Authority => _parts.Authority;

    public int OpenConnections => Connections.Count;

    /// <summary>
    /// <see cref="StartAsync"/> for callers that cannot await (test fixtures); the waiting runs on the
    /// thread pool, so no synchronization context is blocked.
    /// </summary>
    public static HomeServer Start(HomeServerOptions options, HomeCard card) =>
        Task.Run(() => StartAsync(options, card)).GetAwaiter().GetResult();

    /// <summary>Starts serving; <see cref="HomeAlreadyServingException"/> when another home server holds DIR.</summary>
    public static async Task<HomeServer> StartAsync(HomeServerOptions options, HomeCard card, CancellationToken cancellationToken = default)
    {
        var serveLock = ServeLock.Acquire(options.Directory);
        HomeServer server;
        try
        {
            server = new HomeServer(options, card, serveLock);
            // The card starts locked: sessions a previous run left in the store are over.
            await server.Authority.EndAllAsync("the home server started", cancellationToken);
            await server.Payees.RefreshAsync(cancellationToken);
            server._listener.Start();
        }
        catch
        {
            serveLock.Dispose();
            throw;
        }
        server._parts.StartBackground(options);
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await _listener.DisposeAsync();
        // The card is locked from here on: the devices' sessions end now, in the store too (audited).
        try { await Authority.EndAllAsync("the home server stopped"); }
        catch (Exception e) when (e is System.Data.Common.DbException or IOException or InvalidOperationException or TimeoutException) { _logger.SessionsNotEnded(e.Message); }
        await _parts.DisposeAsync();
        Identity.Dispose();
        _serveLock.Dispose();
    }
}
