using System.Diagnostics;
using Daiko.Cards;
using Daiko.Home.Hosting;
using Daiko.Protocol;
using Daiko.TestSupport;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// A relay carries a session for as long as both ends keep it: a quiet market is not a broken one.
/// Only the relay's idle limit (no byte either way) and the device's session end it.
/// </summary>
[Collection("home card")]
public sealed class RelayIdleTests
{
    [Fact]
    public async Task ARelayQuietForLongerThanTheMarketTimeout_StillCarriesTheRequest()
    {
        await using var home = HomeFixture.Start(o => o with { MarketTimeout = TimeSpan.FromSeconds(1), RelayIdleLimit = TimeSpan.FromSeconds(30) });
        using var market = await NginxServer.StartAsync(home.Pki, home.Dir.Path);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var control = await home.UnlockedTerminalAsync(cts.Token);

        var session = await new DelegatedConnector(control).ConnectAsync("localhost", market.Port, DelegationMode.Relay, cancellationToken: cts.Token);
        await Task.Delay(TimeSpan.FromSeconds(2.5), cts.Token);

        Assert.Contains("Alice Example", await GetAsync(session.Stream, cts.Token), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARelayWithNoByteEitherWayForTheIdleLimit_IsCut_AndTheTerminalIsTold()
    {
        await using var home = HomeFixture.Start(o => o with { RelayIdleLimit = TimeSpan.FromSeconds(1.5) });
        using var market = await NginxServer.StartAsync(home.Pki, home.Dir.Path);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var control = await home.UnlockedTerminalAsync(cts.Token);

        var session = await new DelegatedConnector(control).ConnectAsync("localhost", market.Port, DelegationMode.Relay, cancellationToken: cts.Token);
        var clock = Stopwatch.StartNew();
        var buffer = new byte[64];
        var cut = await Assert.ThrowsAsync<IOException>(async () => await session.Stream.ReadAtLeastAsync(buffer, 1, throwOnEndOfStream: false, cts.Token));

        Assert.Contains("cut", cut.Message, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(20));
        // The channel itself is unharmed: the next relay works.
        var next = await new DelegatedConnector(control).ConnectAsync("localhost", market.Port, DelegationMode.Relay, cancellationToken: cts.Token);
        Assert.Contains("Alice Example", await GetAsync(next.Stream, cts.Token), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ADevice_HoldsNoMoreOpenRelaysThanTheLimit_BeyondItNoMarketIsDialled_AndAClosedOneFreesItsPlace()
    {
        await using var home = HomeFixture.Start(o => o with { MaxRelaysPerDevice = 2 });
        using var market = await NginxServer.StartAsync(home.Pki, home.Dir.Path);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var control = await home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        var first = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Relay, cancellationToken: cts.Token);
        var second = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Handoff, cancellationToken: cts.Token);
        foreach (var mode in new[] { DelegationMode.Relay, DelegationMode.Handoff })
        {
            var refused = await Assert.ThrowsAsync<ControlErrorException>(() => connector.ConnectAsync("localhost", market.Port, mode, cancellationToken: cts.Token));
            Assert.Equal(ErrorCode.PolicyRefused, refused.Code);
            Assert.Contains("has 2 relayed or handed-over sessions open", refused.Message, StringComparison.Ordinal);
        }
        var audit = await home.Server.Devices.AuditLogAsync();
        Assert.Equal(2, audit.Count(e => e.Outcome == "refused by policy (open relays)"));
        Assert.Equal(2, audit.Count(e => e.Outcome is "relay opened" or "secrets handed over"));

        // The first ends (its market closes after the answer): its place is free again, the second keeps its own.
        Assert.Contains("Alice Example", await GetAsync(first.Stream, cts.Token), StringComparison.Ordinal);
        await first.Stream.DisposeAsync();
        var device = (await home.Server.Devices.ListAsync(cts.Token)).Single().Id;
        var clock = Stopwatch.StartNew();
        while (home.Server.Splices.HeldBy(device) > 1 && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(20, cts.Token);
        var third = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Relay, cancellationToken: cts.Token);
        Assert.Contains("Alice Example", await GetAsync(third.Stream, cts.Token), StringComparison.Ordinal);
        Assert.Contains("Alice Example", await GetAsync(second.Stream, cts.Token), StringComparison.Ordinal);
    }

    private static Task<string> GetAsync(Stream stream, CancellationToken ct) => DelegationEndToEndTests.GetAsync(stream, ct);
}
