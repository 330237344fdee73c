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

/// <summary>
/// One owner's home server without a listener: devices, delegation, the purse and its reports,
/// appliances, policies, the devices' authority and the handlers behind one
/// <see cref="RequestDispatcher"/>, and the background work that keeps them current. A home server has
/// one (<see cref="HomeServer"/>); a hosted node has one per owner it serves, behind one listener.
/// </summary>
public sealed class HomeParts : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _background = new();
    private readonly Splicer _splicer;

    /// <summary>The relayed and handed-over sessions running, and each device's places.</summary>
    public Splicer Splices => _splicer;
    private readonly PaymentReports _reports;
    private readonly HomeStateWatcher _stateWatcher;
    private readonly PolicyWatcher _policyWatcher;
    private readonly IDisposable _gauges;
    private readonly IssuerFetcher? _issuers;
    private readonly ILogger _logger;

    /// <summary>Where these parts log (on a hosted node, lines naming the owner).</summary>
    public ILogger Logger => _logger;

    /// <param name="identity">The control-channel identity that issues device certificates (not disposed here).</param>
    /// <param name="owner">The owner named in the device certificates issued (a hosted deployment); null for a home server's own.</param>
    /// <param name="enrollmentLimiter">Failed enrollments counted per address and code (a hosted node shares one across its owners).</param>
    public HomeParts(HomeServerOptions options, IHomeCard card, HomeIdentity identity, string? owner = null, EnrollmentLimiter? enrollmentLimiter = null)
    {
        var logger = _logger = options.LoggerFactory.CreateLogger("Daiko.Home");
        Store = options.Store ?? Storage.HomeStore.ForHome(options.Directory);
        Store.Writes.FlushFailed ??= e => logger.BookkeepingFlushFailed($"{e.GetType().Name}: {e.Message}");
        Identity = identity;
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
            logger: logger,
            flightWait: options.TicketFlightWait,
            flightRelearn: options.TicketFlightRelearn,
            handoffTicketWait: options.HandoffTicketWait,
            turns: options.MarketHandshakes,
            owner: owner);
        Payees = new PayeeDirectory(options.WalletDirectory ?? options.Directory, new Storage.SqlPayeeStore(Store), logger);
        Ledger = new PurseLedger(Store, new HomeCardPurse(card), Payees.KeyOf, options.Time);
        _reports = new PaymentReports(options.WalletDirectory ?? options.Directory, card, Ledger, new ReportOutbox(Store.MailOutbox, options.Time), logger, options.MailSettings);
        Appliances = new ApplianceGateway(Store.Appliances, time: options.Time);
        _splicer = new Splicer(logger, options.RelayIdleLimit, options.MaxRelaysPerDevice);
        Connections = new ConnectionRegistry();
        Policies = new Policy.DevicePolicies(new Storage.SqlDevicePolicyStore(Store),
            async (id, ct) => (await Devices.FindByIdAsync(id, ct))?.Name, options.Time, options.AllowPrivateMarkets,
            options.TicketHoldings ?? (Store.Dialect == Storage.HomeDialect.Postgres ? new Storage.StoredTicketHoldings(Store, options.Time) : null))
        {
            Command = owner is null ? Policy.PolicyCommand.Home : Policy.PolicyCommand.Hosted(owner),
        };
        var gate = new CardGate(card);
        var grants = new AssistGrants(options.Time);
        // What the home server holds for a device under a session that ended, however it ended: its cached
        // tickets and assist grants go, and its agents are told to drop their stock (a lock drops them the same way).
        Task ReleaseSessionOf(string device, string reason)
        {
            Delegation.Tickets.PurgeDevice(device);
            grants.Revoke(device);
            return Connections.DropTicketsAsync(device, $"this device's unlock session ended ({reason})");
        }
        Authority = new DeviceAuthority(options.DeviceSessions ?? new Storage.SqlDeviceSessionStore(Store), gate, options.Time, options.IdleTimeout)
        {
            // The device's stocked tickets were handed out under the session that ended (lock, idle, the card
            // leaving crypto-ready): its agents drop them now, before a lock is answered; other devices keep theirs.
            Ended = async (device, reason) =>
            {
                await Devices.AuditAsync(device, "session-end", null, null, reason);
                await ReleaseSessionOf(device, reason);
            },
            Lost = (device, reason) =>
            {
                // Told without waiting: an agent that stopped reading must not hold up the sweep (and with it
                // idle ends and revocations) or the request that found the session gone.
                ReleaseSessionOf(device, reason).ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted);
                return Task.CompletedTask;
            },
            // The device's requests are served under the new session only once its agents were told to drop the
            // old stock (or DeviceAuthority.ReplacementWait passed), so the notice cannot drop what they hand out
            // (the sweep does not wait).
            Replaced = ReleaseSessionOf,
        };
        var handlers = new HomeHandlers(
            gate,
            Authority,
            new EnrollmentHandler(Devices, Identity, logger, enrollmentLimiter, owner),
            new CardHandler(gate, Authority, grants, Devices, Delegation.Tickets, Ledger, logger),
            new DelegationHandler(gate, Delegation, Devices, _splicer, Policies, Authority, grants),
            new AssistHandler(gate, Devices, validator, grants, Policies),
            new ApplianceHandler(Appliances, Devices, Policies),
            new PimHandler(new PimStore(Store, options.Time, options.PimLimits)),
            new WalletHandler(Ledger, _reports, gate, Devices, Policies),
            Policies);
        Enrollment = handlers.Enrollment;
        Dispatcher = new RequestDispatcher(handlers, logger);
        Revocations = new RevocationWatcher(Devices, Connections, Delegation.Tickets, options.Time, logger);
        _stateWatcher = new HomeStateWatcher(card, Authority, grants, Devices, options.Time, logger);
        // Both, whatever the first found: a device may hold a grant and no work, or the reverse.
        _policyWatcher = new PolicyWatcher(Policies, Connections, options.Time, logger, deviceId => Authority.EndWork(deviceId) | grants.Revoke(deviceId));
        Card = card;
        _gauges = HomeMetrics.Gauges(() => Connections.Count, card);
    }

    public ApplianceGateway Appliances { get; }

    public IHomeCard Card { get; }

    /// <summary>All of this owner's state.</summary>
    public Storage.IHomeStore Store { get; }

    public PurseLedger Ledger { get; }

    /// <summary>The markets and banks this owner knows, re-read while the parts run.</summary>
    public PayeeDirectory Payees { get; }

    public HomeIdentity Identity { get; }

    public DeviceRegistry Devices { get; }

    public DelegationService Delegation { get; }

    public Policy.DevicePolicies Policies { get; }

    public ConnectionRegistry Connections { get; }

    public DeviceAuthority Authority { get; }

    public RequestDispatcher Dispatcher { get; }

    public EnrollmentHandler Enrollment { get; }

    private RevocationWatcher Revocations { get; }

    /// <summary>Reads the declared payees once (before serving).</summary>
    public Task RefreshPayeesAsync(CancellationToken cancellationToken = default) => Payees.RefreshAsync(cancellationToken);

    /// <summary>
    /// One look at what changed elsewhere (another node, an owner command): revoked devices' channels
    /// closed and sessions ended, the card's state, the payees. What a change notice triggers at once.
    /// </summary>
    public async Task PollChangesAsync(CancellationToken cancellationToken = default)
    {
        await Revocations.PollOnceAsync(cancellationToken);
        await _stateWatcher.PollAsync(cancellationToken);
        await Payees.RefreshAsync(cancellationToken);
        Policies.Invalidate();
    }

    /// <summary>Starts the background work: payees, revocations, the card's state, reports, appliance readings.</summary>
    public void StartBackground(HomeServerOptions options)
    {
        _background.Add(Payees.RunAsync(options.PayeePoll, options.Time, _stop.Token));
        _background.Add(Revocations.RunAsync(options.RevocationPoll, _stop.Token));
        _background.Add(_stateWatcher.RunAsync(options.RevocationPoll, _stop.Token));
        _background.Add(_reports.RunAsync(options.ReportInterval, options.Time, _stop.Token));
        _background.Add(Appliances.RunCollectorAsync(options.ApplianceCollectInterval, _logger, _stop.Token));
        _background.Add(_policyWatcher.RunAsync(PolicyWatcher.Poll, _stop.Token));
        _background.Add(PruneAuditAsync(options.AuditRetention, options.Time, options.LoggerFactory.CreateLogger("Daiko.Home"), _stop.Token));
    }

    /// <summary>Keeps the audit log within its retention: a first prune soon after the start, then one every <see cref="Storage.AuditRetention.Every"/>.</summary>
    private async Task PruneAuditAsync(Storage.AuditRetention retention, TimeProvider time, ILogger logger, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(retention.FirstAfter, time, cancellationToken);
            using var timer = new PeriodicTimer(retention.Every, time);
            do
            {
                try
                {
                    var prune = await Devices.PruneAuditAsync(retention, cancellationToken);
                    if (prune.BeforeTheirTime > 0) logger.AuditAtItsLineLimit(prune.BeforeTheirTime, retention.Days, retention.MaxLines);
                }
                catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
                {
                    // Whatever went wrong, the next hour tries again; the server goes on, and stops cleanly.
                    logger.AuditPruneFailed($"{e.GetType().Name}: {e.Message}");
                }
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Stops the background work (the listener, if any, is stopped first by its owner).</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        // A background loop that failed is said, and stops nothing else here: a hosted node unloads owners
        // over and over, and each must leave nothing behind.
        foreach (var task in _background)
        {
            try
            {
                await task;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _logger.BackgroundFailed(e);
            }
        }
        await _splicer.DisposeAsync();
        await Delegation.DisposeAsync();
        // Tickets are secrets: wiped now, not left to the collector, and so is any a request still finishing brings.
        Delegation.Tickets.Close();
        Appliances.Dispose();
        _gauges.Dispose();
        _issuers?.Dispose();
        // The last bookkeeping (audit lines of the work just stopped) goes to the disk now, not a second later.
        try
        {
            await Store.Writes.DrainAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is System.Data.Common.DbException or IOException)
        {
            // Committed already: a crash of this process loses none of it; only a power cut in the next moments could.
        }
    }
}
