using System.Collections.Concurrent;
using System.Net.Sockets;
using Daiko.Home.Hosting;
using Daiko.Tls;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Daiko.Home.Delegation;

/// <summary>A market the terminal wants a session with.</summary>
public sealed record MarketRequest(string Host, int Port, string? ServerName, string? Alpn)
{
    public string EffectiveServerName => ServerName ?? Host;

    /// <summary>What the market's profile and its background checks are kept by.</summary>
    public MarketProfileKey ProfileKey => new(Host, Port, EffectiveServerName, Alpn ?? "");

    /// <summary>
    /// The market as a device asked for it, in its one spelling (<see cref="CanonicalHost"/>), with no
    /// server name when it is the host itself; so a policy's ticket count, the ticket cache and the
    /// audit see one market however its name was written.
    /// </summary>
    public static MarketRequest Canonical(string host, int port, string? serverName, string? alpn)
    {
        var canonical = CanonicalHost(host);
        var name = serverName is null ? null : CanonicalHost(serverName);
        return new MarketRequest(canonical, port, name == canonical ? null : name, alpn);
    }

    /// <summary>
    /// A host name in lower case without its trailing dots, an internationalized one in its ASCII (IDNA)
    /// form; an address literal in its one text form (an IPv4-mapped IPv6 address as IPv4, a zone id
    /// only on a link-local address, where it names the interface).
    /// </summary>
    public static string CanonicalHost(string host)
    {
        if (System.Net.IPAddress.TryParse(host.AsSpan().Trim("[]"), out var address)) return Policy.PrivateAddresses.Normal(address).ToString();
        var name = host.TrimEnd('.').ToLowerInvariant();
        try
        {
            var ascii = Idna.GetAscii(name);
            // IDNA maps some characters onto ones a host name never holds (a fullwidth solidus onto '/'): such
            // a name is kept as written, which no lookup resolves, rather than matched against the policy as another.
            return ascii.All(Daiko.Protocol.Messages.MarketAddress.IsHostNameCharacter) ? ascii : name;
        }
        catch (ArgumentException)
        {
            return name; // not a name DNS could resolve: refused when it is looked up
        }
    }

    private static readonly System.Globalization.IdnMapping Idna = new();

    /// <summary>How audit lines name it: host:port, and the server name when it is another.</summary>
    public string Where => ServerName is null ? $"{Host}:{Port}" : $"{Host}:{Port} as {ServerName}";

    /// <summary>
    /// What a device's ticket count (<c>max-tickets</c>) is kept under: the server name and port a ticket
    /// is good for, whichever host or address was dialled to get it.
    /// </summary>
    public string Holding => $"{EffectiveServerName}:{Port}";

    /// <summary>Which addresses the home server may connect to for this request (the device's markets; public ones by default).</summary>
    public Policy.MarketReach Reach { get; init; } = Policy.MarketReach.AnyPublic;

    public MarketKey KeyFor(string deviceId) => new(deviceId, Host, Port, EffectiveServerName, Alpn);
}

/// <summary>The outcome of a delegation a caller expects to handle.</summary>
public enum DelegationFailure
{
    None,
    MarketUnreachable,
    MarketCertificateRejected,
    HandshakeFailed,
    NoTicketIssued,
    CardNotReady,
    /// <summary>The home server's handshakes with markets left no turn for this one in time (<see cref="MarketHandshakeTurns"/>).</summary>
    Busy,
}

public sealed class DelegationException(DelegationFailure failure, string message, Exception? inner = null)
    : Exception(message, inner)
{
    public DelegationFailure Failure { get; } = failure;
}

/// <summary>
/// The home server's side of F3-F7: it connects to markets as the user (the home card signs
/// CertificateVerify), keeps what it obtains in the session cache, and produces what each mode hands
/// to the terminal.
/// </summary>
public sealed class DelegationService : IAsyncDisposable
{
    private readonly Func<ClientCredential> _userCredential;
    private readonly IServerCertificateValidator _validator;
    private readonly SessionCache<SessionTicket> _tickets;
    private readonly MarketProfiles _profiles;
    private readonly TimeProvider _time;
    private readonly TimeSpan _ticketWait;
    private readonly TimeSpan _marketTimeout;
    private readonly TimeSpan _flightWait;
    private readonly TimeSpan _handoffTicketWait;
    private readonly ILogger _logger;
    private readonly MarketHandshakeTurns _turns;
    /// <summary>The owner whose card this is, on a hosted node (null at a home server of one owner): whose share a handshake counts against.</summary>
    private readonly string? _owner;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<MarketKey, Task> _refilling = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Task, byte> _tails = new();
    private readonly Dictionary<MarketKey, Fetches> _fetching = new();

    /// <summary>The fetches for one key that <see cref="Own"/> keeps, in flight: how many, whether one served a terminal, and the newest purge count they began under.</summary>
    private sealed class Fetches
    {
        public int Count;
        public bool Served;
        public long Purges = long.MinValue;
    }
    private readonly Dictionary<MarketProfileKey, DateTimeOffset> _ticketChecks = new();

    /// <summary>
    /// How many tickets each market sent in its last flight that was waited out (and when that was learned): a fetch that
    /// has that many stops reading at once, rather than wait <see cref="DefaultFlightWait"/> for one more that does not come
    /// (a wait that ends by cancelling a socket read, an exception thrown through four frames, on every miss and refill).
    /// </summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<MarketProfileKey, (int Tickets, DateTimeOffset At)> _flights = new();

    /// <summary>How long a learned flight size is trusted before a fetch waits its flight out again (a market may change).</summary>
    public static readonly TimeSpan FlightRelearn = TimeSpan.FromMinutes(10);

    private readonly TimeSpan _flightRelearn;

    /// <summary>The most markets whose flight size is kept (a hosted node's many owners' markets): past it the table starts afresh.</summary>
    private const int MaxFlightsKept = 10_000;
    private readonly Dictionary<MarketProfileKey, (DateTimeOffset At, Task<bool?> Check)> _pskKeChecks = new();
    private readonly CancellationTokenSource _stopping = new();
    private bool _stopped;

    public DelegationService(
        Func<ClientCredential> userCredential,
        IServerCertificateValidator validator,
        SessionCache<SessionTicket> tickets,
        MarketProfiles profiles,
        TimeProvider? time = null,
        TimeSpan? ticketWait = null,
        TimeSpan? marketTimeout = null,
        ILogger? logger = null,
        TimeSpan? flightWait = null,
        TimeSpan? handoffTicketWait = null,
        MarketHandshakeTurns? turns = null,
        string? owner = null,
        TimeSpan? flightRelearn = null)
    {
        _owner = owner;
        _flightRelearn = flightRelearn ?? FlightRelearn;
        _logger = logger ?? NullLogger.Instance;
        _turns = turns ?? MarketHandshakeTurns.ForThisMachine();
        _userCredential = userCredential;
        _validator = validator;
        _tickets = tickets;
        _profiles = profiles;
        _time = time ?? TimeProvider.System;
        _marketTimeout = marketTimeout ?? TimeSpan.FromSeconds(15);
        // A market has as long to send its first ticket as it had for the handshake: under load it comes late, not never.
        _ticketWait = ticketWait ?? _marketTimeout;
        _flightWait = flightWait ?? DefaultFlightWait;
        _handoffTicketWait = handoffTicketWait ?? DefaultHandoffTicketWait;
        if (_handoffTicketWait < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(handoffTicketWait), "a wait cannot be negative");
    }

    /// <summary>
    /// On a handoff, how long the terminal waits while the home server reads the market's first ticket
    /// for its cache (a market sends it as soon as it has read the client's Finished).
    /// </summary>
    public static readonly TimeSpan DefaultHandoffTicketWait = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// After a market's first ticket, how long to wait for the next one of the same flight (OpenSSL
    /// sends two back to back); past it, the market has sent what it will send right after a handshake.
    /// </summary>
    public static readonly TimeSpan DefaultFlightWait = TimeSpan.FromMilliseconds(50);

    public SessionCache<SessionTicket> Tickets => _tickets;

    public MarketProfiles Profiles => _profiles;

    /// <summary>Connects to the market and completes a full handshake with the user's certificate.</summary>
    /// <param name="background">no terminal waits on it (a fetch ahead, a check): its turn comes after those a terminal waits on.</param>
    /// <param name="deviceId">the device that asked, or whose request set this handshake off (null: the owner's own, e.g. the console's post): it waits while that device holds its share of the turns.</param>
    public async Task<TlsConnection> ConnectAsUserAsync(string? deviceId, MarketRequest market, TlsCounters? counters, CancellationToken cancellationToken, bool background = false)
    {
        // A turn among the process's handshakes with markets, from the dial to the handshake's end (so it bounds the
        // market connections open too); waiting for one, the dial and the handshake are each bounded by the market timeout.
        using var turn = await TakeTurnAsync(deviceId, cancellationToken, background);
        return await ConnectInTurnAsync(market, counters, cancellationToken);
    }

    private Task<IDisposable> TakeTurnAsync(string? deviceId, CancellationToken cancellationToken, bool background) =>
        _turns.TakeAsync(_marketTimeout, cancellationToken, background, new TurnHolder(_owner, deviceId));

    /// <summary><see cref="ConnectAsUserAsync"/> for a caller that holds a turn already.</summary>
    private async Task<TlsConnection> ConnectInTurnAsync(MarketRequest market, TlsCounters? counters, CancellationToken cancellationToken)
    {
        var credential = _userCredential();
        var transport = await OpenMarketAsync(market, cancellationToken);
        var options = new TlsClientOptions
        {
            ServerName = market.EffectiveServerName,
            ApplicationProtocols = market.Alpn is null ? [] : [market.Alpn],
            ClientCredential = credential,
            CertificateValidator = _validator,
            // TLS 1.3 whenever the market speaks it; the TLS 1.2 profile for markets that speak only that.
            Versions = TlsVersions.Both,
            Time = _time,
            Counters = counters,
            HandshakeTimeout = _marketTimeout,
            // After the handshake the connection is read for tickets (each wait bounded on its own) or
            // spliced to a terminal, where a quiet market is not a broken one: the splice's idle limit
            // and the device's session bound it, not a per-read timeout.
            OperationTimeout = Timeout.InfiniteTimeSpan,
        };
        try
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var connection = await TlsClient.ConnectAsync(transport, options, cancellationToken);
            Hosting.HomeMetrics.Handshake(System.Diagnostics.Stopwatch.GetElapsedTime(started));
            return connection;
        }
        catch (TlsException e)
        {
            var failure = e.Alert is AlertDescription.BadCertificate or AlertDescription.UnknownCa or AlertDescription.CertificateExpired or AlertDescription.CertificateUnknown
                ? DelegationFailure.MarketCertificateRejected
                : DelegationFailure.HandshakeFailed;
            throw new DelegationException(failure, $"the handshake with {market.Host}:{market.Port} failed: {e.Message}", e);
        }
    }

    /// <summary>
    /// A TCP connection to the market: resolved once, judged against the device's markets, and only a judged address
    /// dialled; the lookup and the dial together within the market timeout (an address that drops the dial holds no turn longer).
    /// </summary>
    private async Task<Stream> OpenMarketAsync(MarketRequest market, CancellationToken cancellationToken)
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bound.CancelAfter(_marketTimeout);
        try
        {
            return await market.Reach.OpenAsync(market.Host, market.Port, market.ServerName, bound.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new DelegationException(DelegationFailure.MarketUnreachable, $"could not reach the market {market.Host}:{market.Port} within {_marketTimeout.TotalSeconds:0.#} s");
        }
        catch (SocketException e)
        {
            throw new DelegationException(DelegationFailure.MarketUnreachable, $"could not reach the market {market.Host}:{market.Port}: {e.SocketErrorCode}", e);
        }
    }

    /// <summary>
    /// A ticket from the cache for mode resume, marked with the psk_ke hint (read before it leaves the cache), or null on
    /// a miss (then <see cref="ObtainTicketAsync"/>). Once taken, the caller hands it over or gives it back
    /// (<see cref="GiveBackCached"/>): so a ticket in hand can be counted against the device's max-tickets with its own expiry.
    /// The caller counts the hit (<see cref="Hosting.HomeMetrics.CacheLookup"/>) once the ticket is counted; a miss is
    /// counted by <see cref="ObtainTicketAsync"/>.
    /// </summary>
    public async Task<SessionTicket?> TakeCachedAsync(string deviceId, MarketRequest market, TimeSpan longest, CancellationToken cancellationToken)
    {
        // An empty cache is a miss at once: the hint is then read by the miss's own path, not twice.
        if (_tickets.Count(market.KeyFor(deviceId)) == 0) return null;
        var pskKe = await PskKeHintAsync(market, cancellationToken);
        return TryTakeCached(deviceId, market, longest) is { } cached ? Hinted(cached, pskKe) : null;
    }

    /// <summary>
    /// Puts back a ticket <see cref="TakeCachedAsync"/> took that was not handed over (the device was at its max-tickets,
    /// or the count could not be written); one whose device was purged since <paramref name="purgesBefore"/> (locked,
    /// revoked, or a fresh ticket asked for another market) is wiped instead. It goes in as a ticket newly added.
    /// </summary>
    public void GiveBackCached(string deviceId, MarketRequest market, SessionTicket ticket, long purgesBefore) =>
        _tickets.Add(market.KeyFor(deviceId), ticket, ticket.ExpiresAt, singleUse: true, purgesBefore);

    /// <summary>
    /// Mode resume: a ticket for the terminal, from the cache or from a fresh full handshake whose
    /// other tickets are cached for next time.
    /// </summary>
    /// <param name="longest">The longest a ticket handed over may have left to live (the device's policy); longer ones stay in the cache.</param>
    /// <param name="fresh">a ticket from a new full handshake, whatever the cache holds (the market refused one: <see cref="DropTickets"/>).</param>
    public async Task<SessionTicket> ObtainTicketAsync(string deviceId, MarketRequest market, CancellationToken cancellationToken, TimeSpan? longest = null, bool fresh = false)
    {
        // Read before a ticket leaves the cache: nothing may fail between taking it and handing it over.
        var pskKe = await PskKeHintAsync(market, cancellationToken);
        return Hinted(await TakeOrFetchAsync(deviceId, market, cancellationToken, longest, fresh), pskKe);
    }

    /// <summary>
    /// What tickets handed over for this market are marked with (<see cref="Hinted"/>): whether the home
    /// server knows it resumes with psk_ke. Read before the tickets are taken from the cache.
    /// </summary>
    public async Task<bool> PskKeHintAsync(MarketRequest market, CancellationToken cancellationToken) =>
        OwnPskKeFinding(market) ?? (await _profiles.FindAsync(market, cancellationToken))?.AcceptsPskKe ?? false;

    /// <summary>
    /// Marks a TLS 1.3 ticket about to be handed over with <paramref name="pskKe"/>
    /// (<see cref="SessionTicket.MarketAcceptsPskKe"/>), so that a terminal that asks for it (<c>--kex auto</c>)
    /// resumes without a key exchange where the market allows it, and never tries psk_ke where it is not known to.
    /// </summary>
    public static SessionTicket Hinted(SessionTicket ticket, bool pskKe)
    {
        ticket.MarketAcceptsPskKe = pskKe && ticket.Version == TlsVersions.Tls13;
        return ticket;
    }

    private async Task<SessionTicket> TakeOrFetchAsync(string deviceId, MarketRequest market, CancellationToken cancellationToken, TimeSpan? longest, bool fresh)
    {
        var key = market.KeyFor(deviceId);
        var limit = longest ?? Policy.DevicePolicy.LongestTicketLifetime;
        if (!fresh)
        {
            var cached = TryTakeCached(deviceId, market, limit);
            Hosting.HomeMetrics.CacheLookup(cached is not null);
            if (cached is not null) return cached;
        }
        if (fresh || _tickets.Count(key) == 0)
        {
            await RefuseIfKnownTicketlessAsync(deviceId, market, cancellationToken);
            // The terminal waits on this handshake: it gets the market's first ticket the moment it is
            // read, while the rest of the market's flight goes to the cache without holding it up.
            var handed = new TaskCompletionSource<SessionTicket?>(TaskCreationOptions.RunContinuationsAsynchronously);
            using (await EnterPlaceAsync(deviceId, cancellationToken))
            {
                var purges = _tickets.PurgesOf(deviceId);
                Own(key, deviceId, market, handed.Task, FetchTicketsAsync(deviceId, market, cancellationToken, (handed, limit), purges), purges);
                if (await handed.Task is { } first) return first;
            }
        }
        // A fresh request is answered by its own handshake or not at all (what the cache holds may be what the market refused).
        return (fresh ? null : TryTakeCached(deviceId, market, limit))
            ?? (_tickets.Count(key) > 0
                ? throw new Policy.PolicyRefusedException(Policy.PolicyRule.TicketLifetime,
                    $"the tickets of {market.Host}:{market.Port} live longer than this device may hold one ({Policy.DevicePolicy.FormatLifetime(limit)}); use handoff or relay", new Policy.PolicyRemedy("lengthen it", "--ticket-lifetime"))
                : throw new DelegationException(DelegationFailure.NoTicketIssued, $"the market {market.Host}:{market.Port} issued no session ticket; use handoff or relay"));
    }

    /// <summary>How long a market known to issue no tickets is taken at its word before a background handshake checks again.</summary>
    public static readonly TimeSpan TicketlessRecheck = TimeSpan.FromMinutes(10);

    /// <summary>
    /// A market a full wait found issuing no tickets is answered at once, with no handshake and no wait
    /// for the terminal; once that knowledge is ten minutes old, a background handshake checks it again
    /// (one market slow to send its ticket under load is not taken as ticketless for long).
    /// </summary>
    private async Task RefuseIfKnownTicketlessAsync(string deviceId, MarketRequest market, CancellationToken cancellationToken)
    {
        if (await _profiles.FindAsync(market, cancellationToken) is not { NoTicketsConfirmed: true } profile) return;
        if (_time.GetUtcNow() - profile.LearnedAt > TicketlessRecheck) CheckTicketsInBackground(deviceId, market);
        throw new DelegationException(DelegationFailure.NoTicketIssued,
            $"the market {market.Host}:{market.Port} issues no session tickets (none came after a full handshake, {profile.LearnedAt:yyyy-MM-dd HH:mm} UTC); use handoff or relay");
    }

    /// <summary>A cached ticket for (device, market) with at most <paramref name="longest"/> left to live (taken from the cache), or null.</summary>
    public SessionTicket? TryTakeCached(string deviceId, MarketRequest market, TimeSpan longest) =>
        _tickets.TryTake(market.KeyFor(deviceId), t => t.ExpiresAt - _time.GetUtcNow() <= longest);

    /// <summary>
    /// Fetch ahead of need: when fewer than <paramref name="low"/> tickets are left for (device,
    /// market), runs one full handshake in the background to refill, so that the next delegation is
    /// answered from the cache. At most one refill per key is in flight; the service owns it (disposal
    /// waits for it) and a failure only costs the cache, and is logged.
    /// </summary>
    /// <param name="purgesBefore">
    /// <see cref="PurgesOf"/> when the work that calls for the refill began: a device that locked (or was
    /// revoked) since gets no refill, and a refill's tickets are discarded if it locks before they come.
    /// </param>
    public void RefillAhead(string deviceId, MarketRequest market, long purgesBefore, int low = 1)
    {
        var key = market.KeyFor(deviceId);
        // A fetch still reading its market's flight for the key fills the cache itself (and refills after it if that left it empty).
        bool fetching;
        lock (_fetching) fetching = _fetching.ContainsKey(key);
        if (fetching || _tickets.Count(key) >= low || _tickets.PurgesOf(deviceId) != purgesBefore) return;
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_refilling.TryAdd(key, gate.Task)) return;
        if (_stopping.IsCancellationRequested)
        {
            // Stopping began meanwhile: its wait may have missed this entry, so no refill starts.
            _refilling.TryRemove(new KeyValuePair<MarketKey, Task>(key, gate.Task));
            gate.TrySetResult();
            return;
        }
        _ = RefillAsync(deviceId, market, key, gate, purgesBefore);
    }

    /// <summary>
    /// Drops the tickets held for (device, market): the market refused one the device was handed (its
    /// ticket keys changed), so the rest are as stale. Returns how many went.
    /// </summary>
    public int DropTickets(string deviceId, MarketRequest market) => _tickets.Drop(market.KeyFor(deviceId));

    /// <summary>How many times the device's tickets were purged (its locks, revocation and <see cref="DropTickets"/>): what <see cref="RefillAhead"/> compares.</summary>
    public long PurgesOf(string deviceId) => _tickets.PurgesOf(deviceId);

    private async Task RefillAsync(string deviceId, MarketRequest market, MarketKey key, TaskCompletionSource done, long purgesBefore)
    {
        await Task.Yield();
        try
        {
            // Room for the wait for a turn, the connection and the whole wait for a first ticket (each up to the market timeout).
            using var timeout = new CancellationTokenSource(3 * _marketTimeout + TimeSpan.FromSeconds(5));
            var fetched = await FetchTicketsAsync(deviceId, market, timeout.Token, purgesBefore: purgesBefore, background: true);
            _logger.TicketsFetchedAhead(fetched, $"{market.Host}:{market.Port}");
        }
        catch (Exception e) when (e is DelegationException or OperationCanceledException or IOException or TlsException or Daiko.Cards.CardNotReadyException or Policy.PolicyRefusedException)
        {
            // A background refill only warms the cache: the next delegation runs its own handshake
            // and reports the error to the terminal.
            _logger.TicketsFetchAheadFailed($"{market.Host}:{market.Port}", e.Message);
            // Too busy to run it at all: a check of a market that sent no ticket may start again at the next handoff.
            if (e is DelegationException { Failure: DelegationFailure.Busy }) lock (_ticketChecks) _ticketChecks.Remove(market.ProfileKey);
        }
        catch (Exception e)
        {
            _logger.BackgroundFailed(e);
        }
        finally
        {
            _refilling.TryRemove(key, out _);
            done.TrySetResult();
        }
    }

    /// <summary>
    /// Handoff: absorbs the tickets markets send right after the handshake (they go to the cache, not
    /// the terminal). Waiting is for the cache only, and only when it would keep them
    /// (<see cref="WorthWaitingForTickets"/>): whatever arrives later, or was read but not yet processed,
    /// goes over with the export, where the terminal (holding no resumption secret) drops it.
    /// </summary>
    public async Task AbsorbTicketsAsync(string deviceId, MarketRequest market, TlsConnection connection, CancellationToken cancellationToken)
    {
        var known = await _profiles.FindAsync(market, cancellationToken);
        var tls13 = connection.Version == TlsVersions.Tls13;
        if (tls13 && !WorthWaitingForTickets(known, market.KeyFor(deviceId))) return;
        var absorbed = new List<SessionTicket>();
        for (var i = 0; i < 2; i++)
        {
            SessionTicket? t;
            try
            {
                // A TLS 1.2 ticket comes inside the handshake: it is read already, or there is none.
                var wait = !tls13 ? TimeSpan.Zero : i == 0 ? _handoffTicketWait : TimeSpan.FromMilliseconds(30);
                t = await connection.WaitForTicketAsync(wait, cancellationToken);
            }
            catch (TlsException e)
            {
                // The market broke the connection right after the handshake: there is nothing to hand off.
                await connection.DisposeAsync();
                throw Dropped(market, e);
            }
            if (t is null) break;
            absorbed.Add(t);
            _tickets.Add(market.KeyFor(deviceId), t, t.ExpiresAt, singleUse: true);
        }
        if (absorbed.Count == 0 && tls13 && known is { Tls13: true })
        {
            // A TLS 1.3 market known as such sent nothing in the brief wait: that proves nothing, so nothing
            // is written (a background check's finding is not overwritten with what this handoff read before
            // its wait). If its tickets are in doubt (none seen yet, or "none" is old), a background handshake
            // waits as long as a resume would, and either fills the cache or records the market as sending
            // none, so that later handoffs (auto picks handoff for it) are not each held for the brief wait.
            // A market met once costs no handshake more. The profile serves every device's auto, so the check
            // runs whatever this device may do; tickets it finds wait in this device's cache (wiped as they expire).
            if (known is { IssuesTickets: false }) CheckTicketsInBackground(deviceId, market);
            return;
        }
        // What the handshake showed is remembered, so that auto picks the right mode next time. A TLS 1.2
        // ticket comes inside the handshake, so its absence is certain; a TLS 1.3 market met for the first
        // time that sent none in this brief wait may send it later, so it is not taken as sending none.
        await _profiles.RememberAsync(new MarketProfile(market.Host, market.Port, tls13, absorbed.Count > 0 || tls13 && known?.IssuesTickets == true,
            AcceptsPskKe(market, known), absorbed.Count > 0 ? absorbed.Max(t => t.MaxEarlyData) : known?.MaxEarlyData ?? 0, _time.GetUtcNow())
        {
            NoTicketsConfirmed = absorbed.Count == 0 && !tls13,
            ServerName = market.ServerName,
            Alpn = market.Alpn,
        }, cancellationToken);
        if (absorbed.Count > 0 && tls13) CheckPskKeInBackground(deviceId, market);
    }

    /// <summary>Markets whose background checks of one kind are remembered (beyond it, one waits for old ones to age out).</summary>
    private const int MaxChecksKept = 1024;

    /// <summary>ALPNs one market (host, port, server name) is checked under within a check's interval; a further one waits for them to age out.</summary>
    public const int MaxAlpnsChecked = 4;

    /// <summary>
    /// Whether a background check of <paramref name="market"/> may start now (the caller holds the lock on
    /// <paramref name="checks"/>): none started there within <paramref name="interval"/>, and room among the
    /// <see cref="MaxChecksKept"/> markets remembered, checks older than the interval making way.
    /// </summary>
    private static bool MayCheck<T>(Dictionary<MarketProfileKey, T> checks, MarketRequest market, DateTimeOffset now, TimeSpan interval, Func<T, DateTimeOffset> startedAt)
    {
        var key = market.ProfileKey;
        if (checks.TryGetValue(key, out var last))
        {
            if (now - startedAt(last) < interval) return false;
        }
        else if (checks.Count(c => c.Key with { Alpn = "" } == key with { Alpn = "" } && now - startedAt(c.Value) < interval) >= MaxAlpnsChecked)
        {
            // A device offering ever new ALPNs to one market it may reach cannot fill the table (and so hold up other markets' checks).
            return false;
        }
        if (checks.Count < MaxChecksKept) return true;
        foreach (var aged in checks.Where(c => now - startedAt(c.Value) >= interval).Select(c => c.Key).ToList()) checks.Remove(aged);
        return checks.Count < MaxChecksKept;
    }

    /// <summary>
    /// A background handshake that waits for a market's first ticket as a resume would (the cache of
    /// (<paramref name="deviceId"/>, market) gets what comes; no ticket records the market as sending none):
    /// at most one a market (host, port, server name and ALPN) per <see cref="TicketlessRecheck"/>, whatever it found or however
    /// it ended, so a market that breaks the check's connection is not checked again on every handoff.
    /// </summary>
    private void CheckTicketsInBackground(string deviceId, MarketRequest market)
    {
        var now = _time.GetUtcNow();
        lock (_ticketChecks)
        {
            if (!MayCheck(_ticketChecks, market, now, TicketlessRecheck, last => last)) return;
            _ticketChecks[market.ProfileKey] = now;
        }
        RefillAhead(deviceId, market, _tickets.PurgesOf(deviceId));
    }

    /// <summary>
    /// Whether a TLS 1.3 handoff should hold the terminal's reply while the market's first tickets are
    /// read (a round trip to the market and its check of the user's certificate): yes for a market not
    /// known yet, or not known to be TLS 1.3 (what it sends is what the profile learns); not for one
    /// known to send no tickets (until that knowledge is <see cref="TicketlessRecheck"/> old, when a
    /// handoff's wait checks again), nor while this device's cache for the market is full (a new ticket
    /// would only push out an older one). Tickets not read here go over with the connection, and the
    /// handed-over session has no resumption secret to make anything of them.
    /// </summary>
    private bool WorthWaitingForTickets(MarketProfile? known, MarketKey key) => known switch
    {
        null or { Tls13: false } => true,
        { NoTicketsConfirmed: true } => _time.GetUtcNow() - known.LearnedAt > TicketlessRecheck,
        { IssuesTickets: true } => _tickets.Count(key) < SessionCache<SessionTicket>.MaxEntriesPerKey,
        _ => true,
    };

    private static DelegationException Dropped(MarketRequest market, TlsException e) =>
        new(DelegationFailure.HandshakeFailed, $"the market {market.Host}:{market.Port} broke the connection right after the handshake: {e.Message}", e);

    /// <summary>
    /// Keeps a fetch whose first ticket went to a terminal: the rest of its flight is read in the
    /// background (counted among the key's fetches in flight, so the terminal's reply asks for no second
    /// handshake meanwhile), disposal waits for it, and a failure there (the terminal was served) is only logged.
    /// When the last fetch in flight for the key ends, if any of them served a terminal, the key is refilled
    /// ahead if the flights left the cache empty (a market that sends one ticket a handshake), as the
    /// terminals' replies would have asked had the flights been over, unless the device locked since the newest began.
    /// </summary>
    private void Own(MarketKey key, string deviceId, MarketRequest market, Task<SessionTicket?> handed, Task<int> fetch, long purges)
    {
        if (fetch.IsCompleted)
        {
            Observe(fetch);
            return;
        }
        // Every fetch for the key is counted (misses back to back overlap their tails): while any runs, no
        // refill starts, and the last to end refills for all of them.
        lock (_fetching)
        {
            if (!_fetching.TryGetValue(key, out var fetches)) _fetching[key] = fetches = new Fetches();
            fetches.Count++;
        }
        _tails.TryAdd(fetch, 0);
        _ = fetch.ContinueWith(f =>
        {
            var (last, served, newest) = Done(key, handed is { IsCompletedSuccessfully: true, Result: not null }, purges);
            _tails.TryRemove(f, out _);
            Observe(f);
            if (last && served && !_stopping.IsCancellationRequested) RefillAhead(deviceId, market, newest);
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// One fetch for <paramref name="key"/> ended (<see cref="_fetching"/>): whether it was the last in flight,
    /// whether any of them served a terminal, and the newest purge count they began under.
    /// </summary>
    private (bool Last, bool Served, long Purges) Done(MarketKey key, bool served, long purges)
    {
        lock (_fetching)
        {
            var fetches = _fetching[key];
            if (served) (fetches.Served, fetches.Purges) = (true, Math.Max(fetches.Purges, purges));
            var last = --fetches.Count == 0;
            if (last) _fetching.Remove(key);
            return (last, fetches.Served, fetches.Purges);
        }
    }

    private void Observe(Task<int> fetch)
    {
        if (fetch.Exception?.GetBaseException() is { } e && e is not OperationCanceledException) _logger.BackgroundFailed(e);
    }

    /// <summary>
    /// Stops reading the tails of fetches and waits for them and for background refills still running
    /// (their failures were logged where they happened; shutting down goes on past them).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        // Under the checks' lock: no psk_ke check starts after this (one that did would not be waited for).
        lock (_pskKeChecks) _stopped = true;
        await _stopping.CancelAsync();
        // Until none is left: a tail that ended as stopping began may still have started a refill.
        while (_refilling.Values.Concat(_tails.Keys).Where(t => !t.IsCompleted).ToList() is { Count: > 0 } running)
        {
            foreach (var task in running)
            {
                try
                {
                    await task;
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                }
            }
        }
    }

    /// <summary>
    /// Makes sure at least <paramref name="wanted"/> tickets are ready for (device, market), running up
    /// to four full handshakes; returns how many are ready and how many handshakes ran.
    /// </summary>
    public async Task<(int Ready, int Handshakes)> PrefetchAsync(string deviceId, MarketRequest market, int wanted, CancellationToken cancellationToken)
    {
        var key = market.KeyFor(deviceId);
        var handshakes = 0;
        if (_tickets.Count(key) < wanted) await RefuseIfKnownTicketlessAsync(deviceId, market, cancellationToken);
        while (_tickets.Count(key) < wanted && handshakes < 4)
        {
            handshakes++;
            int fetched;
            using (await EnterPlaceAsync(deviceId, cancellationToken)) fetched = await FetchTicketsAsync(deviceId, market, cancellationToken);
            if (fetched == 0)
            {
                throw new DelegationException(DelegationFailure.NoTicketIssued, $"the market {market.Host}:{market.Port} issued no session ticket; use handoff or relay");
            }
        }
        return (_tickets.Count(key), handshakes);
    }

    /// <summary>
    /// Runs a full handshake only to collect tickets (also used to fetch ahead of need). The first ticket
    /// is waited for as long as the handshake may take (<c>MarketTimeout</c>); a TLS 1.2 market's comes
    /// inside the handshake, so there is nothing to wait for.
    /// </summary>
    /// <param name="handTo">
    /// a terminal waiting on a cache miss: the first ticket with at most its lifetime limit left to live
    /// is set there the moment it is read (not cached), and the rest of the flight is read afterwards on
    /// the service's own bound, not the terminal's request; a failure before that ticket is set there too,
    /// and the result is null when the market sent no ticket the terminal may hold.
    /// </param>
    /// <param name="background">no terminal waits on it (a refill ahead of need): its turn comes after those a terminal waits on.</param>
    public async Task<int> FetchTicketsAsync(string deviceId, MarketRequest market, CancellationToken cancellationToken,
        (TaskCompletionSource<SessionTicket?> Waiting, TimeSpan Longest)? handTo = null, long? purgesBefore = null, bool background = false)
    {
        try
        {
            return await FetchAsync(deviceId, market, cancellationToken, handTo, purgesBefore, background);
        }
        catch (Exception e) when (handTo?.Waiting.TrySetException(e) == true)
        {
            return 0;
        }
        finally
        {
            handTo?.Waiting.TrySetResult(null);
        }
    }

    /// <summary>
    /// How many ticket handshakes a device's requests wait on at once (its misses, prefetches and stock);
    /// more wait for a place. Each holds a market connection and costs a card signature, which every
    /// device of the owner shares: one device asking for many at once cannot take them all. A miss holds
    /// its place until its ticket is handed over; what the handshake does after that (the rest of the
    /// market's flight) and the background refills are bounded per market on their own. Handoffs and
    /// relays have their own bound (<see cref="Splicer"/>).
    /// </summary>
    public const int MaxFetchesPerDevice = 8;

    private readonly ConcurrentDictionary<string, SemaphoreSlim> _devicePlaces = new(StringComparer.Ordinal);

    /// <summary>A place among the device's <see cref="MaxFetchesPerDevice"/>, given back when disposed.</summary>
    private async Task<Place> EnterPlaceAsync(string deviceId, CancellationToken cancellationToken)
    {
        var places = _devicePlaces.GetOrAdd(deviceId, _ => new SemaphoreSlim(MaxFetchesPerDevice, MaxFetchesPerDevice));
        await places.WaitAsync(cancellationToken);
        return new Place(places);
    }

    private sealed class Place(SemaphoreSlim places) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0) places.Release();
        }
    }

    private async Task<int> FetchAsync(string deviceId, MarketRequest market, CancellationToken cancellationToken,
        (TaskCompletionSource<SessionTicket?> Waiting, TimeSpan Longest)? handTo, long? purgesBefore, bool background)
    {
        var key = market.KeyFor(deviceId);
        // Taken before the handshake (or when the work that called for it began): if the device locks (or
        // is revoked) meanwhile, what it brings back is wiped, not cached for the device's next session.
        var purges = purgesBefore ?? _tickets.PurgesOf(deviceId);
        await using var connection = await ConnectAsUserAsync(deviceId, market, null, cancellationToken, background);
        var deadline = _time.GetUtcNow() + (connection.Version == TlsVersions.Tls13 ? _ticketWait : TimeSpan.Zero);
        var received = 0;
        var maxEarlyData = 0u;
        using var tail = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        var token = cancellationToken;
        // A market may send tickets without end: take a handful, the cache keeps no more anyway.
        var flight = _flights.TryGetValue(market.ProfileKey, out var learned) && _time.GetUtcNow() - learned.At < _flightRelearn ? learned.Tickets : (int?)null;
        var waitedOut = false;
        while (received < TlsConnection.MaxTicketsKept)
        {
            // The market's whole flight is in: no wait for a ticket it does not send.
            if (received > 0 && received == flight) break;
            // Servers send their tickets in one flight (OpenSSL two, back to back): after the first,
            // wait only briefly for the rest.
            var left = deadline - _time.GetUtcNow();
            var wait = received == 0 ? left : TimeSpan.FromMilliseconds(Math.Min(_flightWait.TotalMilliseconds, left.TotalMilliseconds));
            SessionTicket? ticket;
            try
            {
                ticket = await connection.WaitForTicketAsync(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, token);
            }
            catch (TlsException e) when (received == 0)
            {
                // A market that breaks the connection before any ticket failed this delegation; it is no internal error.
                throw Dropped(market, e);
            }
            catch (TlsException)
            {
                break;
            }
            catch (OperationCanceledException) when (received > 0 && token == tail.Token)
            {
                // The tail's own bound or the service stopping: the flight is over; the terminal was served.
                return received;
            }
            if (ticket is null)
            {
                waitedOut = received > 0;
                break;
            }
            received++;
            maxEarlyData = Math.Max(maxEarlyData, ticket.MaxEarlyData);
            if (handTo is { } h && !h.Waiting.Task.IsCompleted && ticket.ExpiresAt - _time.GetUtcNow() <= h.Longest)
            {
                h.Waiting.TrySetResult(ticket);
                // The terminal has its ticket: what is left is the cache's, bounded by the market timeout
                // and the service's life, not by the terminal's request.
                tail.CancelAfter(_marketTimeout);
                token = tail.Token;
                continue;
            }
            _tickets.Add(key, ticket, ticket.ExpiresAt, singleUse: true, purges);
        }
        if (waitedOut && connection.Version == TlsVersions.Tls13)
        {
            if (_flights.Count >= MaxFlightsKept) _flights.Clear();
            _flights[market.ProfileKey] = (received, _time.GetUtcNow());
        }
        await _profiles.RememberAsync(new MarketProfile(market.Host, market.Port, connection.Version == TlsVersions.Tls13, received > 0,
            AcceptsPskKe(market, await _profiles.FindAsync(market, token)),
            maxEarlyData, _time.GetUtcNow())
        {
            NoTicketsConfirmed = received == 0,
            ServerName = market.ServerName,
            Alpn = market.Alpn,
        }, token);
        if (received > 0 && connection.Version == TlsVersions.Tls13) CheckPskKeInBackground(deviceId, market);
        await CloseQuietlyAsync(connection, token);
        return received;
    }

    private static async Task CloseQuietlyAsync(TlsConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            await connection.CloseAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or TlsException or OperationCanceledException or ObjectDisposedException)
        {
            // What the connection was for is done; a market that drops it before close_notify costs nothing.
        }
    }

    /// <summary>How long what a check found of a market's psk_ke stands before a ticket fetched from it starts another.</summary>
    public static readonly TimeSpan PskKeRecheck = TimeSpan.FromHours(24);

    /// <summary>
    /// Whether a TLS 1.3 market resumes with psk_ke alone (no key share: the terminal then runs no
    /// public-key operation at all) is learned by trying it, in the background, after a handshake of the
    /// home server's brought tickets: one full handshake of its own (so no device's cached ticket is spent)
    /// and one resumption offering psk_ke only. At most one check a market (host, port, server name and ALPN) per
    /// <see cref="PskKeRecheck"/> in this process, whatever it found or however it ended; the finding goes
    /// to the market's profile, and from there onto every ticket handed over (<see cref="PskKeHintAsync"/>).
    /// A market that says no answers with an alert; one that cannot be reached, or times out, teaches nothing.
    /// </summary>
    private void CheckPskKeInBackground(string deviceId, MarketRequest market)
    {
        var now = _time.GetUtcNow();
        lock (_pskKeChecks)
        {
            if (_stopped || !MayCheck(_pskKeChecks, market, now, PskKeRecheck, last => last.At)) return;
            var check = CheckPskKeAsync(deviceId, market);
            _pskKeChecks[market.ProfileKey] = (now, check);
            _tails.TryAdd(check, 0);
            _ = check.ContinueWith(c => _tails.TryRemove(c, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>The latest psk_ke check of a market in this process, or null if none has started.</summary>
    internal Task? PskKeCheck(string host, int port, string? serverName = null, string? alpn = null)
    {
        lock (_pskKeChecks) return _pskKeChecks.TryGetValue(new MarketProfileKey(host, port, serverName ?? host, alpn ?? ""), out var c) ? c.Check : null;
    }

    /// <summary>
    /// Whether the market takes psk_ke: this process's own latest finding, else the stored profile's.
    /// The finding wins so that a profile written from a read made just before the check's own write
    /// (a fetch's or a handoff's, from the same stale read) cannot undo it.
    /// </summary>
    private bool AcceptsPskKe(MarketRequest market, MarketProfile? known) => OwnPskKeFinding(market) ?? known?.AcceptsPskKe ?? false;

    /// <summary>What this process's latest psk_ke check of the market found, or null (none, still running, or it taught nothing).</summary>
    private bool? OwnPskKeFinding(MarketRequest market)
    {
        lock (_pskKeChecks)
        {
            return _pskKeChecks.TryGetValue(market.ProfileKey, out var c) && c.Check is { IsCompletedSuccessfully: true, Result: { } found } ? found : null;
        }
    }

    /// <summary>The check itself: true or false as the market answered, null if it taught nothing.</summary>
    private async Task<bool?> CheckPskKeAsync(string deviceId, MarketRequest market)
    {
        await Task.Yield();
        var where = $"{market.Host}:{market.Port}";
        SessionTicket? ticket = null;
        try
        {
            using var bound = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            // The wait for a turn, the dial and the handshake, the wait for its ticket, and the resumption's dial and
            // handshake: each up to the market timeout.
            bound.CancelAfter(6 * _marketTimeout + TimeSpan.FromSeconds(5));
            var token = bound.Token;
            bool accepts;
            // One turn for the whole check: the resumption dials the market and runs a handshake of its own (no card
            // signature, but a connection and, refused, a key exchange), and a second turn refused at the device's share
            // would waste the full handshake (and its card signature) just made.
            using (await TakeTurnAsync(deviceId, token, background: true))
            {
                await using (var full = await ConnectInTurnAsync(market, null, token))
                {
                    if (full.Version != TlsVersions.Tls13) return null;
                    ticket = await full.WaitForTicketAsync(_ticketWait, token);
                    // Only the first ticket is used; any other the market sent with it is wiped with the connection.
                    foreach (var other in full.Tickets) if (!ReferenceEquals(other, ticket)) other.Wipe();
                    await CloseQuietlyAsync(full, token);
                }
                if (ticket is null) return null;
                try
                {
                    var transport = await OpenMarketAsync(market, token);
                    await using var resumed = await TlsClient.ConnectAsync(transport, new TlsClientOptions
                    {
                        ServerName = market.EffectiveServerName,
                        ApplicationProtocols = market.Alpn is null ? [] : [market.Alpn],
                        ResumptionTicket = ticket,
                        Versions = TlsVersions.Tls13,
                        PskModes = [PskKeyExchangeMode.PskKe],
                        // No groups, no key share: the market resumes with psk_ke or cannot go on at all.
                        ResumeOnly = true,
                        CertificateValidator = _validator,
                        Time = _time,
                        HandshakeTimeout = _marketTimeout,
                        OperationTimeout = _marketTimeout,
                    }, token);
                    accepts = resumed.KeyExchange == PskKeyExchangeMode.PskKe;
                    await CloseQuietlyAsync(resumed, token);
                }
                catch (TlsException e) when (e.SentByPeer || e.Error is not (TlsError.Timeout or TlsError.TransportClosed))
                {
                    // An alert (missing_extension, handshake_failure), or an answer that is no psk_ke resumption.
                    accepts = false;
                }
            }
            await _profiles.RememberPskKeAsync(market.ProfileKey, accepts, token);
            _logger.PskKeChecked(where, accepts ? "accepts" : "refuses");
            return accepts;
        }
        catch (Exception e) when (e is DelegationException or OperationCanceledException or IOException or TlsException or Daiko.Cards.CardNotReadyException or Policy.PolicyRefusedException)
        {
            // Unreachable, timed out, the card locked meanwhile, the name now resolving outside the device's reach.
            _logger.PskKeCheckFailed(where, e.Message);
            // Too busy to run it at all: the next ticket fetched from the market starts it again, not a day later.
            if (e is DelegationException { Failure: DelegationFailure.Busy }) lock (_pskKeChecks) _pskKeChecks.Remove(market.ProfileKey);
        }
        catch (Exception e)
        {
            _logger.BackgroundFailed(e);
        }
        finally
        {
            ticket?.Wipe();
        }
        return null;
    }
}
