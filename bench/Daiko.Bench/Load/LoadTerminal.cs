using Daiko.Tls;
using System.Security.Cryptography;
using System.Text;
using Daiko.Cards;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Home.Policy;
using Daiko.Home.Trust;
using Daiko.Home.Storage;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Daiko.TestSupport;

namespace Daiko.Bench.Load;

/// <summary>What a simulated terminal asks of the home server in one session.</summary>
public enum LoadMode
{
    ResumeHit,
    ResumeMiss,
    Handoff,
    Relay,
    Assist,
    Pay,
}

/// <summary>
/// One simulated terminal: its own directory, access card and enrolled device key, and its own control
/// channel to the home server, driven through the terminal SDK (<see cref="DelegatedConnector"/>,
/// the wallet's control requests). Many of them share one load-generator process.
/// </summary>
public sealed class LoadTerminal : IAsyncDisposable
{
    public const string AccessPin = "432100";

    private readonly ControlConnection _control;
    private readonly DelegatedConnector _connector;
    private readonly int _marketPort;
    private readonly PskKeyExchangeMode? _kex;
    private int _payments;

    private LoadTerminal(string name, ControlConnection control, int marketPort, PskKeyExchangeMode? kex)
    {
        Name = name;
        _control = control;
        _marketPort = marketPort;
        _kex = kex;
        _connector = new DelegatedConnector(control) { TerminalRoute = (_, port) => ("127.0.0.1", port) };
    }

    public string Name { get; }

    public ControlConnection Control => _control;

    /// <summary>
    /// Enrolls a new device with the home server at <paramref name="homeEndpoint"/>: an enrollment code
    /// written to the home store as <c>daiko home device add</c> writes it (loopback markets allowed, as
    /// every test device), then the terminal's own enrollment and control channel.
    /// </summary>
    /// <summary>
    /// The load's devices may hold this many live tickets per market: one simulated terminal takes a
    /// thousand tickets in a few seconds of a warm-cache row, and each counts until it expires (60 s).
    /// </summary>
    public const int MaxTickets = 100_000;

    /// <param name="kex">the key exchange of its resumptions (null: as the home server's ticket says, <c>--kex auto</c>).</param>
    public static async Task<LoadTerminal> EnrollAsync(string home, string homeEndpoint, string work, string name, int marketPort, CancellationToken ct,
        PskKeyExchangeMode? kex = PskKeyExchangeMode.PskDheKe)
    {
        var store = HomeStore.Sqlite(HomeServer.DatabasePath(home));
        byte[] spkiHash;
        using (var identity = HomeIdentity.LoadOrCreate(home)) spkiHash = identity.SpkiHash;
        var (secret, _) = await new DeviceRegistry(store).AddEnrollmentCodeAsync(name, ct);
        await new SqlDevicePolicyStore(store).SaveAsync(name, DevicePolicy.Default with
        {
            Markets = DevicePolicy.ParseMarkets(LoopbackMarkets.Markets),
            MaxTickets = MaxTickets,
        }, ct);
        var directory = Path.Combine(work, name);
        await TerminalClient.EnrollAsync(directory, homeEndpoint, EnrollmentCode.Compose(secret, spkiHash), AccessPin, ct,
            createAccessCard: (d, p) => AccessCard.Create(d, p, Daiko.Cards.Access.AccessCardKdf.ForTests));
        using var access = AccessCard.Open(directory);
        access.Unlock(AccessPin);
        var control = await TerminalClient.ConnectAsync(directory, access.DeviceKey, ct);
        return new LoadTerminal(name, control, marketPort, kex);
    }

    /// <summary>Opens this device's session with the home card (PIN1 and PIN2, as a user's unlock).</summary>
    public Task UnlockAsync(CancellationToken ct) => new HomeControl(_control).UnlockAsync(LoadRig.Pin1, LoadRig.Pin2, ct);

    /// <summary>Has the home server run full handshakes now until it holds <paramref name="tickets"/> tickets for this terminal (a warm cache).</summary>
    public Task WarmAsync(int tickets, CancellationToken ct) => _connector.PrefetchAsync("localhost", _marketPort, minimum: tickets, cancellationToken: ct);

    /// <summary>
    /// One delegated session: established (the terminal holds a connection it can use to the market),
    /// then closed. Resume modes must resume (nginx then reports no new handshake with the terminal).
    /// </summary>
    public async Task SessionAsync(LoadMode mode, CancellationToken ct)
    {
        var wire = mode switch
        {
            LoadMode.ResumeHit or LoadMode.ResumeMiss => DelegationMode.Resume,
            LoadMode.Handoff => DelegationMode.Handoff,
            LoadMode.Relay => DelegationMode.Relay,
            LoadMode.Assist => DelegationMode.Assist,
            _ => throw new ArgumentOutOfRangeException(nameof(mode)),
        };
        await SessionAsync(_connector, _marketPort, wire, ct, _kex, fresh: mode == LoadMode.ResumeMiss);
    }

    /// <summary>
    /// The home server's part of a warm-cache resume alone: the terminal asks for a ticket and gets one
    /// (then wipes it, without connecting to the market). Resumption with the market is the terminal's
    /// and the market's work; this is the rate at which the home server hands out its cache.
    /// </summary>
    /// <param name="fresh">from a new full handshake at the home server (a miss), not from its cache.</param>
    public async Task TicketAsync(CancellationToken ct, bool fresh = false)
    {
        var reply = await _control.RequestAsync(new DelegateRequest(new MarketAddress("localhost", _marketPort, "localhost", null), DelegationMode.Resume, fresh), ct);
        if (reply is not TicketReply { Ticket: var ticket }) throw new InvalidOperationException($"asked for a ticket, got {reply.GetType().Name}");
        ticket.Wipe();
    }

    /// <summary>One delegated session through <paramref name="connector"/> to the market on localhost: established in <paramref name="wire"/> mode, then closed.</summary>
    public static async Task SessionAsync(DelegatedConnector connector, int marketPort, DelegationMode wire, CancellationToken ct,
        PskKeyExchangeMode? kex = PskKeyExchangeMode.PskDheKe, bool fresh = false)
    {
        var session = await connector.ConnectAsync("localhost", marketPort, wire, kex, cancellationToken: ct, fresh: fresh);
        await using var stream = session.Stream;
        if (session.Mode != wire) throw new InvalidOperationException($"asked for {wire.ToWire()}, got {session.Mode.ToWire()}");
    }

    /// <summary>One session with a GET of /whoami over it: what the relay's open-loop latency measures.</summary>
    public async Task SessionWithRequestAsync(LoadMode mode, CancellationToken ct)
    {
        var wire = mode == LoadMode.Relay ? DelegationMode.Relay : DelegationMode.Handoff;
        var session = await _connector.ConnectAsync("localhost", _marketPort, wire, cancellationToken: ct);
        await using var stream = session.Stream;
        await ExpectWhoamiAsync(stream, ct);
    }

    /// <summary>Sends GET /whoami and throws unless nginx answers 200 naming the user's certificate.</summary>
    public static async Task ExpectWhoamiAsync(Stream stream, CancellationToken ct)
    {
        await stream.WriteAsync("GET /whoami HTTP/1.0\r\nHost: localhost\r\n\r\n"u8.ToArray(), ct);
        using var answer = new MemoryStream();
        await stream.CopyToAsync(answer, ct);
        var text = Encoding.ASCII.GetString(answer.ToArray());
        if (!text.StartsWith("HTTP/1.1 200", StringComparison.Ordinal) || !text.Contains("subject=", StringComparison.Ordinal))
            throw new InvalidOperationException($"the market answered: {text}");
    }

    /// <summary>A market's signed payment request for 1 JPY under a new id of this terminal's.</summary>
    public byte[] PaymentRequest(ECDsa marketKey, string market)
    {
        var id = $"{Name}-{Interlocked.Increment(ref _payments)}";
        lock (marketKey) return new Daiko.Money.PaymentRequest(market, "order-" + id, id, 1, "JPY", DateTimeOffset.UtcNow.AddHours(1), "").Sign(marketKey);
    }

    /// <summary>A payment through the control channel: the market's signed request in, the card's signed payment and its id back.</summary>
    public Task<string> PayAsync(byte[] request, CancellationToken ct) => PayAsync(_control, request, ct);

    /// <summary>A payment through <paramref name="control"/>: the market's signed request in, the payment id the card signed back.</summary>
    public static async Task<string> PayAsync(ControlConnection control, byte[] request, CancellationToken ct)
    {
        var reply = await control.RequestAsync<WalletPaymentReply>(new WalletPayRequest(request), ct);
        return string.IsNullOrEmpty(reply.PaymentId) ? throw new InvalidOperationException("the home server answered a payment without its id") : reply.PaymentId;
    }

    public async ValueTask DisposeAsync() => await _control.DisposeAsync();
}
