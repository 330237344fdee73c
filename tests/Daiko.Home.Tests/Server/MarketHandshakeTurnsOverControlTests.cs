using Daiko.Home.Delegation;
using Daiko.Protocol;
using Daiko.Terminal.Sessions;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// A real home server whose turns let two handshakes with markets run at once: four handoffs asked at once
/// start their handshakes with the market two at a time (a turn is held from the dial to the handshake's end), and
/// all four are served. The market is gnutls-serv (it serves connections side by
/// side) behind a proxy that counts ClientHellos and holds each ServerHello 3 s.
/// </summary>
[Collection("home card")]
public sealed class MarketHandshakeTurnsOverControlTests : IAsyncLifetime
{
    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start(o => o with { MarketHandshakes = new MarketHandshakeTurns(floor: 2, ceiling: 2) });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _home.DisposeAsync();

    [Fact]
    public async Task HandoffsAskedAtOnce_ReachTheMarketNoMoreAtOnceThanTheTurns_AndAreAllServed()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path);
        var clientHellos = 0;
        int ClientHellos() => Volatile.Read(ref clientHellos);
        using var proxy = RecordTamperingProxy.Start(market.Port,
            (direction, type, content) =>
            {
                if (direction == RecordDirection.ClientToServer && type == 22) Interlocked.Increment(ref clientHellos);
                return content;
            },
            (direction, type, _) => direction == RecordDirection.ServerToClient && type == 22 ? TimeSpan.FromSeconds(3) : TimeSpan.Zero);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        var sessions = Enumerable.Range(0, 4)
            .Select(_ => connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Handoff, cancellationToken: cts.Token))
            .ToList();
        // Two handshakes hold their turns (their ServerHellos held back 3 s); the other two wait for theirs and
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
