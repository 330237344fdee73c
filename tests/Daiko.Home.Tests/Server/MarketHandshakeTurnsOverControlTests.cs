using System.Runtime.CompilerServices;
using Daiko.Home.Delegation;
using Daiko.Protocol;
using Daiko.Terminal.Sessions;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// A real home server whose turns let two handshakes with markets run at once, one a device: handoffs asked at once
/// start their handshakes with the market two at a time (a turn is held from the dial to the handshake's end), and
/// all are served; a device whose market stalls holds its one turn, not both, and another device's handoff goes
/// ahead meanwhile. The market is gnutls-serv (it serves connections side by side) behind a proxy that counts
/// ClientHellos and holds each ServerHello back.
/// </summary>
[Collection("home card")]
public sealed class MarketHandshakeTurnsOverControlTests : IAsyncLifetime
{
    private readonly MarketHandshakeTurns _turns = new(floor: 2, ceiling: 2, deviceShare: 1);
    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start(o => o with { MarketHandshakes = _turns });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _home.DisposeAsync();

    /// <summary>A proxy to <paramref name="port"/> that holds each ServerHello back <paramref name="hold"/>, and the count of ClientHellos it passed.</summary>
    private static (RecordTamperingProxy Proxy, Func<int> ClientHellos) HoldingServerHellos(int port, TimeSpan hold) => HoldingServerHellos(port, _ => hold);

    /// <summary>The same, holding the n-th ServerHello (from 1) back as long as <paramref name="hold"/> says.</summary>
    private static (RecordTamperingProxy Proxy, Func<int> ClientHellos) HoldingServerHellos(int port, Func<int, TimeSpan> hold)
    {
        var hellos = new StrongBox<int>();
        var serverHellos = new StrongBox<int>();
        var proxy = RecordTamperingProxy.Start(port,
            (direction, type, content) =>
            {
                if (direction == RecordDirection.ClientToServer && type == 22) Interlocked.Increment(ref hellos.Value);
                return content;
            },
            (direction, type, _) => direction == RecordDirection.ServerToClient && type == 22 ? hold(Interlocked.Increment(ref serverHellos.Value)) : TimeSpan.Zero);
        return (proxy, () => Volatile.Read(ref hellos.Value));
    }

    [Fact]
    public async Task HandoffsAskedAtOnce_ReachTheMarketNoMoreAtOnceThanTheTurns_AndAreAllServed()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path);
        // Held long enough that a loaded machine still samples while both are held (the sampling takes half a second).
        var (proxy, ClientHellos) = HoldingServerHellos(market.Port, TimeSpan.FromSeconds(4.5));
        using var _ = proxy;
        await using var phone = await _home.UnlockedTerminalAsync(cts.Token, "phone");
        await using var till = await _home.UnlockedTerminalAsync(cts.Token, "till");
        var connectors = new[] { new DelegatedConnector(phone), new DelegatedConnector(till) };

        var sessions = Enumerable.Range(0, 4)
            .Select(i => connectors[i % 2].ConnectAsync("localhost", proxy.Port, DelegationMode.Handoff, cancellationToken: cts.Token))
            .ToList();
        // Two handshakes hold their turns (their ServerHellos held back 4.5 s); the other two wait for theirs and
        // send no ClientHello meanwhile.
        while (ClientHellos() < 2) await Task.Delay(20, cts.Token);
        var handshakesSeen = new List<int>();
        for (var i = 0; i < 5; i++)
        {
            handshakesSeen.Add(ClientHellos());
            await Task.Delay(100, cts.Token);
        }
        Assert.All(handshakesSeen, seen => Assert.Equal(2, seen));
        foreach (var session in await Task.WhenAll(sessions))
        {
            Assert.Equal(DelegationMode.Handoff, session.Mode);
            await session.Stream.DisposeAsync();
        }
        Assert.True(ClientHellos() >= 4, $"the market saw {ClientHellos()} handshake(s)");
    }

    [Fact]
    public async Task APskKeCheck_HoldsATurnForItsResumption_AsForItsFullHandshake()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        // A market that resumes with psk_ke, so that the check's resumption gets a ServerHello (to hold back) rather than an alert.
        using var market = await OpenSslServer.StartAsync(_home.Pki, new TlsPeerOptions { AllowPskKe = true });
        // Only the check's resumption (the third handshake) is held back, long enough to be seen holding its turn on a loaded machine.
        var (proxy, ClientHellos) = HoldingServerHellos(market.Port, n => n == 3 ? TimeSpan.FromSeconds(5) : TimeSpan.Zero);
        using var _ = proxy;
        await using var phone = await _home.UnlockedTerminalAsync(cts.Token, "phone");

        // The prefetch's handshake brings tickets (ClientHello 1); the psk_ke check then runs a full handshake of its own
        // (2) and a resumption offering psk_ke alone (3).
        var prefetched = await phone.RequestAsync<Daiko.Protocol.Messages.PrefetchedReply>(
            new Daiko.Protocol.Messages.PrefetchRequest(new Daiko.Protocol.Messages.MarketAddress("localhost", proxy.Port, null, null), 1), cts.Token);
        Assert.True(prefetched.Ready >= 1);
        while (ClientHellos() < 3) await Task.Delay(10, cts.Token);

        // The resumption's ServerHello is held back: meanwhile it holds a turn, and nothing else does.
        Assert.Equal(1, _turns.InFlight);
        Assert.True(await ((Task<bool?>)_home.Server.Delegation.PskKeCheck("localhost", proxy.Port)!).WaitAsync(cts.Token));
        Assert.Equal(0, _turns.InFlight);
    }

    [Fact]
    public async Task ADeviceWhoseMarketStalls_HoldsOnlyItsShareOfTheTurns_AndAnotherDevicesHandoffGoesAhead()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        // Two markets: the till's must not be the one busy finishing the stalled handshakes.
        using var market = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path);
        using var stalledMarket = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path);
        var (stalling, stalledHellos) = HoldingServerHellos(stalledMarket.Port, TimeSpan.FromSeconds(9));
        using var _ = stalling;
        await using var phone = await _home.UnlockedTerminalAsync(cts.Token, "phone");
        await using var till = await _home.UnlockedTerminalAsync(cts.Token, "till");

        // The phone asks for two handoffs to the stalling market: one holds the phone's one turn, the other waits for it.
        var stalled = Enumerable.Range(0, 2)
            .Select(_ => new DelegatedConnector(phone).ConnectAsync("localhost", stalling.Port, DelegationMode.Handoff, cancellationToken: cts.Token))
            .ToList();
        // One holds the phone's turn, the other waits for it (a free turn left over): only then does the till ask.
        while (stalledHellos() < 1 || (_turns.InFlight, _turns.Waiting) != (1, 1)) await Task.Delay(20, cts.Token);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var tills = await new DelegatedConnector(till).ConnectAsync("localhost", market.Port, DelegationMode.Handoff, cancellationToken: cts.Token);
        var tookTheTill = clock.Elapsed;
        await tills.Stream.DisposeAsync();

        // Without the share the phone's second handshake would hold the other turn, and the till would wait the 9 s out.
        Assert.True(tookTheTill < TimeSpan.FromSeconds(4.5), $"the till's handoff took {tookTheTill.TotalSeconds:0.0} s");
        Assert.Equal(1, stalledHellos());
        // Both of the phone's are served once the market answers (a psk_ke check of the market may follow them).
        foreach (var session in await Task.WhenAll(stalled))
        {
            Assert.Equal(DelegationMode.Handoff, session.Mode);
            await session.Stream.DisposeAsync();
        }
    }

    [Fact]
    public async Task ACacheRefillCountsAgainstTheDeviceItIsFor_AndIsLeftForLater_WhileThatDeviceHoldsItsShare()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await OpenSslServer.StartAsync(_home.Pki, new TlsPeerOptions { Tickets = 1 });
        using var stalledMarket = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path);
        // Stalled far longer than the checks below take on a loaded machine; the proxy's end cuts it after them.
        var (stalling, _) = HoldingServerHellos(stalledMarket.Port, TimeSpan.FromSeconds(60));
        using var _ = stalling;
        await using var phone = await _home.UnlockedTerminalAsync(cts.Token, "phone");
        var connector = new DelegatedConnector(phone);
        Assert.Equal((1, 1), await connector.PrefetchAsync("localhost", market.Port, minimum: 1, cancellationToken: cts.Token));

        // The phone's one turn is held by a handshake its market stalls; a turn is still free.
        var stalled = connector.ConnectAsync("localhost", stalling.Port, DelegationMode.Handoff, cancellationToken: cts.Token);
        while (_turns.InFlight != 1) await Task.Delay(20, cts.Token);
        // Its resume takes the cached ticket, which empties the cache and calls for a refill for the phone.
        var resumed = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, cancellationToken: cts.Token);
        Assert.True(resumed.Tls!.Resumed);
        await resumed.Stream.DisposeAsync();

        // Counted against the phone, the refill is left for later: the free turn stays free, no ticket comes.
        for (var i = 0; i < 15; i++)
        {
            await Task.Delay(100, cts.Token);
            Assert.Equal(1, _turns.InFlight);
            Assert.Equal(0, (await connector.PrefetchAsync("localhost", market.Port, minimum: 0, cancellationToken: cts.Token)).Ready);
        }
        Assert.False(stalled.IsCompleted, "the stalled handshake ended while the refill was checked");
        // The market goes away: the handshake fails as the home server tells the terminal, and its turn is given back.
        stalling.Dispose();
        await Assert.ThrowsAsync<ControlErrorException>(async () => await stalled);
        for (var i = 0; i < 200 && _turns.InFlight != 0; i++) await Task.Delay(50, cts.Token);
        Assert.Equal(0, _turns.InFlight);
    }

    [Fact]
    public async Task OnAHostedNode_ADevicesHandshakeCountsAgainstItsOwner_NotAgainstAnotherOwners()
    {
        // Two owners' parts as a hosted node makes them, sharing turns whose owner's share is one.
        var turns = new MarketHandshakeTurns(floor: 4, ceiling: 4, coresBusy: () => true, deviceShare: 1, ownerShare: 1);
        var options = new Daiko.Home.Hosting.HomeServerOptions(_home.HomeDirectory, new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0))
        {
            MarketHandshakes = turns,
            MarketTimeout = TimeSpan.FromMilliseconds(500),
        };
        await using var alices = new Daiko.Home.Hosting.HomeParts(options, _home.Card, _home.Server.Identity, owner: "alice");
        await using var bobs = new Daiko.Home.Hosting.HomeParts(options, _home.Card, _home.Server.Identity, owner: "bob");
        using var alicesTv = await turns.TakeAsync(TimeSpan.FromSeconds(5), CancellationToken.None, holder: new TurnHolder("alice", "tv"));
        var market = MarketRequest.Canonical("127.0.0.1", 9, null, null);

        var held = await Assert.ThrowsAsync<DelegationException>(() => alices.Delegation.ConnectAsUserAsync("phone", market, null, CancellationToken.None));

        Assert.Equal(DelegationFailure.Busy, held.Failure);
        Assert.Contains("busy for this owner: their devices already have 1 handshake", held.Message, StringComparison.Ordinal);
        // Bob's device is not held back by Alice's share: it goes on to the market (a loopback address its reach refuses).
        var bobsTry = await Record.ExceptionAsync(() => bobs.Delegation.ConnectAsUserAsync("phone", market, null, CancellationToken.None));
        Assert.False(bobsTry is DelegationException { Failure: DelegationFailure.Busy }, bobsTry?.Message);
        Assert.Equal(1, turns.InFlight);
    }
}

/// <summary>
/// A real home server with one turn and a 2 s market timeout, and a market that never answers a ClientHello in
/// time: of three handoffs asked at once, the first holds the turn until its handshake times out, and the one that waited its whole market timeout for a turn is answered <c>unavailable</c>, saying the home
/// server is busy.
/// </summary>
[Collection("home card")]
public sealed class MarketHandshakeTurnsBusyTests : IAsyncLifetime
{
    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start(o => o with { MarketHandshakes = new MarketHandshakeTurns(floor: 1, ceiling: 1), MarketTimeout = TimeSpan.FromSeconds(2) });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _home.DisposeAsync();

    [Fact]
    public async Task AHandoffThatWaitedTheMarketTimeoutForATurn_IsAnsweredUnavailable_TheOthersFailAtTheMarket()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path);
        using var proxy = RecordTamperingProxy.Start(market.Port, (_, _, content) => content,
            (direction, type, _) => direction == RecordDirection.ServerToClient && type == 22 ? TimeSpan.FromSeconds(10) : TimeSpan.Zero);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        var refusals = await Task.WhenAll(Enumerable.Range(0, 3).Select(async _ =>
            await Assert.ThrowsAsync<ControlErrorException>(() => connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Handoff, cancellationToken: cts.Token))));

        // The first holds the turn until its handshake times out; the last in line cannot get it before its own wait
        // ends; the second may get it just as the first gives it back, or time out at the same moment.
        Assert.Contains(refusals, e => e.Code == ErrorCode.HandshakeFailed);
        Assert.Contains(refusals, e => e.Code == ErrorCode.Unavailable);
        Assert.All(refusals, e => Assert.True(
            e.Code == ErrorCode.HandshakeFailed || (e.Code == ErrorCode.Unavailable && e.Message.Contains("busy", StringComparison.Ordinal)),
            $"{e.Code}: {e.Message}"));
    }

    [Fact]
    public async Task AMarketThatNeverAnswersTheDial_IsUnreachableWithinTheMarketTimeout_AndHoldsTheTurnNoLonger()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        // A listener that never accepts, its queue full: the kernel drops every further SYN, so a dial hangs.
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        var port = ((System.Net.IPEndPoint)listener.LocalEndPoint!).Port;
        var fillers = new List<System.Net.Sockets.Socket>();
        try
        {
            while (true)
            {
                var filler = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                fillers.Add(filler);
                using var quick = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
                try
                {
                    await filler.ConnectAsync(System.Net.IPAddress.Loopback, port, quick.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                Assert.True(fillers.Count < 50, "the listener's queue never filled");
            }
            await using var control = await _home.UnlockedTerminalAsync(cts.Token);
            var connector = new DelegatedConnector(control);
            var clock = System.Diagnostics.Stopwatch.StartNew();

            var e = await Assert.ThrowsAsync<ControlErrorException>(() => connector.ConnectAsync("127.0.0.1", port, DelegationMode.Handoff, cancellationToken: cts.Token));

            Assert.Equal(ErrorCode.MarketUnreachable, e.Code);
            Assert.Contains("within 2 s", e.Message);
            Assert.InRange(clock.Elapsed.TotalSeconds, 1.5, 10);
            // The one turn is free again: the next delegation waits for none.
            using var market = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path);
            var session = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Handoff, cancellationToken: cts.Token);
            await session.Stream.DisposeAsync();
        }
        finally
        {
            foreach (var filler in fillers) filler.Dispose();
        }
    }
}
