using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards.Site;
using Daiko.Home.Control;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Home.Storage;
using Daiko.Home.Trust;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Daiko.Host;

/// <summary>What one node of a hosted deployment needs: the site, where to listen, and how to log.</summary>
public sealed record HostNodeOptions(string SiteDirectory, IPEndPoint Listen)
{
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    /// <summary>The backstop poll of each loaded owner (change notices apply at once; this catches a lost one).</summary>
    public TimeSpan Poll { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A device's unlock session ends after this long without use.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// An owner with no device connected to this node for this long is unloaded from it: its polls and
    /// background work stop, and its ticket cache goes (<c>host serve --owner-idle</c>). Its next device
    /// loads it again; nothing is lost, since its state is in PostgreSQL and the site token. Zero (the
    /// default) keeps every owner loaded: an owner's appliance readings are collected only where it is loaded.
    /// </summary>
    public TimeSpan OwnerIdle { get; init; }

    public bool AllowPrivateMarkets { get; init; }

    /// <summary>Connections start with a PROXY protocol v2 header from the load balancer, whose client address the per-source limits use.</summary>
    public bool ProxyProtocol { get; init; }

    /// <summary>The balancers whose PROXY headers are believed (<c>host serve --proxy-from</c>; default loopback); any other peer is refused.</summary>
    public ProxySources ProxyFrom { get; init; } = ProxySources.Loopback;
}

/// <summary>
/// One stateless node of a hosted deployment (<c>daiko host serve</c>): one control listener for every
/// owner. A device certificate names its owner (the site identity signed it), an enrollment code's
/// public id is looked up in <c>host_codes</c>; each owner's parts (<see cref="HomeParts"/>) are built on
/// first use from the owner's schema and card row, and kept while in use (<c>--owner-idle</c>). Nothing is remembered that another node
/// must know: sessions, counters, the card's state and the ledger are in PostgreSQL, keys in the site
/// token. Changes made anywhere reach this node through LISTEN daiko_host within milliseconds.
/// </summary>
public sealed class HostNode : IControlRoutes, IAsyncDisposable
{
    private readonly HostNodeOptions _options;
    private readonly HostSite _site;
    private readonly SiteToken _token;
    private readonly NpgsqlDataSource _source;
    private readonly SiteDatabase _database;
    private readonly HomeIdentity _identity;
    private readonly ControlListener _listener;
    private readonly ILogger _logger;
    private readonly EnrollmentLimiter _limiter = new();
    private readonly StrangerRefusals _unknownCodes = new();
    private readonly ConcurrentDictionary<string, Lazy<Task<HomeParts?>>> _owners = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _lastUse = new(StringComparer.Ordinal);

    /// <summary>One set of turns for every owner's handshakes with markets: they share this node's cores.</summary>
    private readonly Home.Delegation.MarketHandshakeTurns _marketHandshakes = Home.Delegation.MarketHandshakeTurns.ForThisMachine();
    // Held while an owner's parts are handed out and while the sweeper decides to unload them.
    private readonly object _loading = new();
    private readonly CancellationTokenSource _stop = new();
    private Task _changes = Task.CompletedTask;
    private Task _unloading = Task.CompletedTask;

    private HostNode(HostNodeOptions options, HostSite site, HomeIdentity identity, SiteToken token, NpgsqlDataSource source)
    {
        _options = options;
        _site = site;
        _token = token;
        _source = source;
        _database = new SiteDatabase(source);
        _identity = identity;
        _logger = options.LoggerFactory.CreateLogger("Daiko.Host");
        PooledConnections.Logger = _logger;
        _listener = new ControlListener(options.Listen, _identity, this, _logger) { ProxyProtocol = options.ProxyProtocol, ProxyFrom = options.ProxyFrom };
    }

    public IPEndPoint LocalEndPoint => _listener.LocalEndPoint;

    public ConnectionRegistry StrangerConnections { get; } = new();

    /// <summary>Owners whose parts this node has built.</summary>
    public int LoadedOwners => _owners.Count;

    /// <summary>Health: the site's PostgreSQL answers a query on a connection from this node's pool.</summary>
    public async Task CheckDatabaseAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _source.OpenConnectionAsync(cancellationToken);
        await using var query = new NpgsqlCommand("SELECT 1", connection);
        await query.ExecuteScalarAsync(cancellationToken);
    }

    /// <summary>Health: the site token answers and shows the site's own key (throws when it does not).</summary>
    public void CheckToken() => _token.Probe();

    /// <summary>
    /// Starts a node on the site directory. The site's secret files are checked first (<see cref="HostSite.RequirePrivateSecrets"/>).
    /// The site identity is loaded then, and never made here
    /// (<see cref="HostSite.LoadIdentity"/>): a node started from an incomplete copy of the site throws
    /// <see cref="HomeIdentityMissingException"/> rather than serve under a second identity, which terminals
    /// that pinned the site's would refuse (an outage of that node) and whose device certificates no other node trusts.
    /// </summary>
    public static async Task<HostNode> StartAsync(HostNodeOptions options, CancellationToken cancellationToken = default)
    {
        var site = HostSite.Open(options.SiteDirectory);
        site.RequirePrivateSecrets();
        // Before the token is opened: a connection string the site cannot use is the first thing to say.
        HostSite.RequireSessionConnections(site.ConnectionString, Path.Combine(site.Directory, "postgres"));
        var identity = site.LoadIdentity();
        SiteToken? token = null;
        NpgsqlDataSource? source = null;
        HostNode node;
        try
        {
            token = site.OpenToken();
            source = site.OpenDataSource();
            node = new HostNode(options, site, identity, token, source);
            await using (var probe = await source.OpenConnectionAsync(cancellationToken)) { }
            node._listener.Start();
        }
        catch
        {
            identity.Dispose();
            token?.Dispose();
            if (source is not null) await source.DisposeAsync();
            throw;
        }
        node._changes = node.ListenForChangesAsync(node._stop.Token);
        node._unloading = node.UnloadIdleOwnersAsync(node._stop.Token);
        return node;
    }

    public async Task<DeviceLookup> FindDeviceAsync(X509Certificate2 certificate, string deviceId, CancellationToken cancellationToken)
    {
        if (HomeIdentity.OwnerOf(certificate) is not { } owner || !HostSite.IsOwnerName(owner)) return new DeviceLookup(null, null);
        var parts = await PartsAsync(owner);
        if (parts is null)
        {
            _logger.UnknownOwner(owner);
            return new DeviceLookup(null, null);
        }
        return new DeviceLookup(await parts.Devices.FindByIdAsync(deviceId, cancellationToken), new ControlRoute(parts.Devices, parts.Dispatcher, parts.Connections, parts.Logger));
    }

    /// <summary>Enrollment: the code's public id names the owner; an unknown id is refused and counted against the address.</summary>
    public async Task DispatchStrangerAsync(ControlRequest request, ControlConnection connection, IPAddress peer)
    {
        var addressKey = EnrollmentLimiter.AddressKey(peer);
        if (request.Message is EnrollRequest && _limiter.WaitFor(addressKey) is { } wait)
        {
            // Told to wait, as a home server tells it, and counted nothing more: a user who sends the right code again too
            // soon is not held back longer for it (nor told the code is not valid).
            await connection.ReplyAsync(request, new ErrorReply(ErrorCode.EnrollmentRefused, Daiko.Home.Handlers.EnrollmentHandler.AddressWaitSentence(wait)));
            return;
        }
        HomeParts? found = null;
        try
        {
            if (request.Message is EnrollRequest enroll
                && EnrollmentCode.Parse(enroll.Secret)?.PublicId is { } publicId
                && await _database.OwnerOfCodeAsync(publicId, connection.Closed) is { } owner)
            {
                found = await PartsAsync(owner);
            }
        }
        catch (Exception e) when (StoreOutage.Is(e) && !connection.Closed.IsCancellationRequested)
        {
            // Whose code it is cannot be read now: a moment's failure, not a wrong code (nothing counted against the address).
            StoreOutage.Log(_logger, request.Message.Type, e);
            await connection.ReplyAsync(request, new ErrorReply(ErrorCode.Unavailable, StoreOutage.Sentence));
            return;
        }
        if (found is { } parts)
        {
            await parts.Dispatcher.DispatchAsync(request, connection, null, peer);
            return;
        }
        if (request.Message is EnrollRequest)
        {
            _limiter.Failed(addressKey);
            // A stranger's flood of wrong codes must not fill the node's log either: a line a source a minute, and few in all.
            if (_unknownCodes.Note(addressKey) is (true, var unwritten)) _logger.UnknownCode(peer.ToString(), unwritten);
        }
        await connection.ReplyAsync(request, new ErrorReply(ErrorCode.EnrollmentRefused, "the enrollment code is not valid"));
    }

    /// <summary>
    /// The owner's parts, built on first use and kept while the owner is in use here (see
    /// <see cref="UnloadIdleOwnersAsync"/>); a build that failed (the database away) is tried again by the next connection.
    /// </summary>
    private async Task<HomeParts?> PartsAsync(string owner)
    {
        Lazy<Task<HomeParts?>> lazy;
        lock (_loading)
        {
            _lastUse[owner] = Environment.TickCount64;
            lazy = _owners.GetOrAdd(owner, name => new Lazy<Task<HomeParts?>>(() => LoadAsync(name)));
        }
        try
        {
            return await lazy.Value;
        }
        catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException)
        {
            _owners.TryRemove(KeyValuePair.Create(owner, lazy));
            throw;
        }
    }

    private async Task<HomeParts?> LoadAsync(string owner)
    {
        if (_database.Read(owner) is null)
        {
            _owners.TryRemove(owner, out _);
            return null;
        }
        var card = new HostedCard(owner, _token, _database);
        var directory = _site.OwnerDirectory(owner);
        Directory.CreateDirectory(directory);
        var options = new HomeServerOptions(_site.Directory, _options.Listen)
        {
            Store = _database.StoreOf(owner),
            LoggerFactory = new OwnerLoggerFactory(_options.LoggerFactory, owner),
            WalletDirectory = directory,
            RevocationPoll = _options.Poll,
            PayeePoll = _options.Poll,
            IdleTimeout = _options.IdleTimeout,
            AllowPrivateMarkets = _options.AllowPrivateMarkets,
            MailSettings = () => _database.MailOf(owner),
            MarketHandshakes = _marketHandshakes,
        };
        var parts = new HomeParts(options, card, _identity, owner, _limiter);
        try
        {
            await parts.RefreshPayeesAsync(_stop.Token);
        }
        catch
        {
            await parts.DisposeAsync();
            throw;
        }
        parts.StartBackground(options);
        _logger.OwnerLoaded(owner);
        return parts;
    }

    /// <summary>
    /// LISTEN daiko_host on a connection of its own; each notice (an owner's schema) makes that owner's
    /// parts, if loaded here, look at what changed at once. A lost connection is opened again.
    /// </summary>
    private async Task ListenForChangesAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                // Held to the site's session limits like every other: a vanished node's listener should not keep a server slot for hours.
                await using var connection = await _database.OpenConnectionAsync(cancellationToken);
                var pending = new ConcurrentQueue<string>();
                connection.Notification += (_, e) => pending.Enqueue(e.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN {SiteDatabase.Channel}", connection)) await listen.ExecuteNonQueryAsync(cancellationToken);
                // Whatever changed while this node was not listening.
                await ApplyAsync(_owners.Keys.Select(HostSite.SchemaOf), cancellationToken);
                while (!cancellationToken.IsCancellationRequested)
                {
                    await connection.WaitAsync(cancellationToken);
                    var schemas = new HashSet<string>(StringComparer.Ordinal);
                    while (pending.TryDequeue(out var schema)) schemas.Add(schema);
                    await ApplyAsync(schemas, cancellationToken);
                }
            }
            catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException && !cancellationToken.IsCancellationRequested)
            {
                _logger.ChangesLost(e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async Task ApplyAsync(IEnumerable<string> schemas, CancellationToken cancellationToken)
    {
        foreach (var schema in schemas)
        {
            var owner = _owners.Keys.FirstOrDefault(o => HostSite.SchemaOf(o) == schema);
            if (owner is null || !_owners.TryGetValue(owner, out var lazy) || !lazy.IsValueCreated) continue;
            try
            {
                if (await lazy.Value is { } parts) await parts.PollChangesAsync(cancellationToken);
            }
            catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException)
            {
                _logger.ChangeFailed(schema, e.Message);
            }
        }
    }

    /// <summary>
    /// Every so often (a quarter of <see cref="HostNodeOptions.OwnerIdle"/>, between 0.25 s and 30 s), unloads
    /// the owners loaded here that have had no control channel open, and no device arriving, for
    /// <see cref="HostNodeOptions.OwnerIdle"/>: out of the table first, under the lock parts are handed out
    /// under (a device arriving afterwards loads the owner anew, as another node would), their connections
    /// sealed (one routed to them just before is closed as it registers, and its terminal reconnects), then
    /// stopped. A node then holds the owners in use, not every owner it met.
    /// </summary>
    private async Task UnloadIdleOwnersAsync(CancellationToken cancellationToken)
    {
        var idle = _options.OwnerIdle;
        if (idle <= TimeSpan.Zero) return;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(Math.Clamp(idle.TotalMilliseconds / 4, 250, 30_000)));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                foreach (var (owner, lazy) in _owners)
                {
                    if (!lazy.IsValueCreated || !lazy.Value.IsCompletedSuccessfully || lazy.Value.Result is not { } parts) continue;
                    long since;
                    lock (_loading)
                    {
                        // An open channel is use: the idle time counts from when the last one closed.
                        if (parts.Connections.Count > 0) _lastUse[owner] = Environment.TickCount64;
                        since = Environment.TickCount64 - _lastUse.GetValueOrDefault(owner);
                        if (since < idle.TotalMilliseconds || !_owners.TryRemove(KeyValuePair.Create(owner, lazy))) continue;
                    }
                    parts.Connections.Seal("the home server unloaded this owner from the node; connect again");
                    try
                    {
                        await parts.DisposeAsync();
                        _logger.OwnerUnloaded(owner, since / 1000);
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        _logger.OwnerUnloadFailed(owner, $"{e.GetType().Name}: {e.Message}");
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _listener.DisposeAsync();
        await _changes;
        await _unloading;
        foreach (var lazy in _owners.Values)
        {
            if (lazy.IsValueCreated && await lazy.Value is { } parts) await parts.DisposeAsync();
        }
        _identity.Dispose();
        _token.Dispose();
        await _source.DisposeAsync();
    }
}
