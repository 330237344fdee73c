using Daiko.Home.Delegation;
using Daiko.Protocol;
using Daiko.Terminal.Sessions;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// A real home server whose turns let two handshakes with markets run at once: four handoffs asked at once
/// reach the market two at a time (each holds its connection until its handshake ends), and all four are served.
/// The market is gnutls-serv (it serves connections side by side) behind a proxy that holds each ServerHello 2 s.
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
        using var proxy = RecordTamperingProxy.Start(market.Port, (_, _, content) => content,
            (direction, type, _) => direction == RecordDirection.ServerToClient && type == 22 ? TimeSpan.FromSeconds(2) : TimeSpan.Zero);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        var sessions = Enumerable.Range(0, 4)
            .Select(_ => connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Handoff, cancellationToken: cts.Token))
            .ToList();
        await Task.Delay(1000, cts.Token);

        // Two handshakes hold their turns (their ServerHellos held back); the other two have not dialled the market.
        Assert.Equal(2, proxy.Connections);
        foreach (var session in await Task.WhenAll(sessions))
        {
            Assert.Equal(DelegationMode.Handoff, session.Mode);
            await session.Stream.DisposeAsync();
        }
        Assert.True(proxy.Connections >= 4, $"the market saw {proxy.Connections} connection(s)");
    }
}
