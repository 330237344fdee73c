using Daiko.Cards;
using Daiko.Home.Control;
using Daiko.Protocol;
using Daiko.Terminal;
using Daiko.Terminal.Agent;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// The terminal agent's one control channel, in process against a real home server: it stays open
/// through idleness (only a stranger's silence is cut short by the home server), and it ends with the
/// agent at the agent's idle expiry. Both periods are shortened here so that the test stays quick.
/// </summary>
[Collection("home card")]
public sealed class AgentChannelIdleTests
{
    private static readonly TimeSpan StrangerTimeout = TimeSpan.FromSeconds(1);
    // Long enough past the idle wait below (3 s) that a loaded machine cannot stretch that wait past the expiry.
    private static readonly TimeSpan AgentIdle = TimeSpan.FromSeconds(8);

    [Fact]
    public async Task TheAgentsChannel_OutlivesIdlenessLongerThanTheStrangerTimeout_AndEndsWithTheAgentsIdleExpiry()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var home = HomeFixture.Start(o => o with { PeerLimits = new PeerLimits { StrangerIdleTimeout = StrangerTimeout } });
        var directory = Path.Combine(home.Dir.Path, "terminal");
        await TerminalClient.EnrollAsync(directory, home.Endpoint, await home.NewCodeAsync("laptop"), HomeFixture.AccessPin, createAccessCard: HomeFixture.TestAccessCard, cancellationToken: cts.Token);
        using var access = AccessCard.Open(directory);
        Assert.True(access.Unlock(HomeFixture.AccessPin).Accepted);
        await using var agent = TerminalAgent.Start(directory, access, idle: AgentIdle);
        var running = agent.RunAsync(cts.Token);

        await using (var first = await AgentClient.ConnectAsync(directory, cts.Token))
        {
            await new HomeControl(first).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
            Assert.True((await new HomeControl(first).AgentCostAsync(cts.Token)).PublicKeyOperations > 0, "the first command opens the channel");
        }
        // Idle for three times the stranger timeout, within the agent's idle period.
        await Task.Delay(StrangerTimeout * 3, cts.Token);

        await using (var second = await AgentClient.ConnectAsync(directory, cts.Token))
        {
            Assert.Equal(CardState.CryptoReady, (await new HomeControl(second).CardStatusAsync(cts.Token)).State);
            var cost = await new HomeControl(second).AgentCostAsync(cts.Token);
            // The same channel: one round trip for the request, no handshake (a reopened one costs its ECDHE at least).
            Assert.Equal(0, cost.PublicKeyOperations);
            Assert.Equal(1, cost.RoundTrips);
        }
        Assert.Equal(1, home.Server.OpenConnections);

        // Nothing more to do: the agent ends at its idle expiry, and its channel with it.
        await running.WaitAsync(AgentIdle * 3, cts.Token);
        Assert.False(AgentClient.IsRunning(directory));
        for (var i = 0; i < 40 && home.Server.OpenConnections > 0; i++) await Task.Delay(100, cts.Token);
        Assert.Equal(0, home.Server.OpenConnections);
    }
}
