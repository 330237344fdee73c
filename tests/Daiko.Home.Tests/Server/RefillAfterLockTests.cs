using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Daiko.Terminal;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// A lock drops the tickets the home server holds for the device, and nothing fetched for the device
/// before the lock fills its cache again after it: no refill starts once it locked. A real openssl
/// s_server market that sends one ticket a handshake, reached through a proxy that counts the connections made.
/// </summary>
[Collection("home card")]
public sealed class RefillAfterLockTests
{
    [Fact]
    public async Task ADeviceThatLocks_WhileItsMissStillReadsTheMarketsFlight_GetsNoRefillAfterwards_AndItsNextResumeIsAMiss()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        // After the miss hands its one ticket over, the fetch waits 4 s for more of the flight (as for a market whose flight
        // it has not learned: none is trusted here); then, the cache being empty, it would refill it in the background.
        // The lock below must reach the home server within that wait: 4 s leaves a loaded machine room for its round trip.
        await using var home = HomeFixture.Start(o => o with { TicketFlightWait = FlightWait, TicketFlightRelearn = TimeSpan.Zero });
        using var market = await OpenSslServer.StartAsync(home.Pki, new TlsPeerOptions { Tickets = 1 });
        using var proxy = RecordTamperingProxy.Start(market.Port, (_, _, content) => content);
        await using var control = await home.UnlockedTerminalAsync(cts.Token);
        var request = new DelegateRequest(new MarketAddress("localhost", proxy.Port, "localhost", null), DelegationMode.Resume);
        // The market met once, and all that follows its first miss settled: the psk_ke check (once a
        // market) and the refill that keeps a ticket ready for the unlocked device.
        Assert.IsType<TicketReply>(await control.RequestAsync(request, cts.Token));
        // Both are waited for by what they leave (a finished check, a ticket ready), then for quiet at the market.
        var settling = System.Diagnostics.Stopwatch.StartNew();
        while (home.Server.Delegation.PskKeCheck("localhost", proxy.Port, "localhost") is not { IsCompleted: true } && settling.Elapsed < Settle) await Task.Delay(50, cts.Token);
        var ready = new PrefetchRequest(request.Market, Minimum: 0);
        while ((await control.RequestAsync<PrefetchedReply>(ready, cts.Token)).Ready < 1 && settling.Elapsed < Settle) await Task.Delay(50, cts.Token);
        await QuietAsync(proxy, cts.Token);
        await new HomeControl(control).LockAsync(cts.Token);
        await new HomeControl(control).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        var before = proxy.Connections;

        // A miss (the lock dropped the refilled ticket): one connection, its one ticket handed over.
        Assert.IsType<TicketReply>(await control.RequestAsync(request, cts.Token));
        Assert.Equal(before + 1, proxy.Connections);
        await new HomeControl(control).LockAsync(cts.Token);
        // The miss's flight wait ends after the lock; a refill would be another connection.
        await Task.Delay(FlightWait + TimeSpan.FromSeconds(1.5), cts.Token);
        Assert.Equal(before + 1, proxy.Connections);

        await new HomeControl(control).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        Assert.IsType<TicketReply>(await control.RequestAsync(request, cts.Token));
        // Nothing was kept for the locked device: the next resume ran its own handshake.
        Assert.Equal(before + 2, proxy.Connections);
    }

    private static readonly TimeSpan FlightWait = TimeSpan.FromSeconds(4);

    /// <summary>The most the first miss's aftermath is waited for before the quiet is (the suite's slowest machine took seconds).</summary>
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(30);

    /// <summary>Until the market has seen no new connection for longer than a flight wait.</summary>
    private static async Task QuietAsync(RecordTamperingProxy proxy, CancellationToken cancellationToken)
    {
        var (seen, since) = (proxy.Connections, DateTime.UtcNow);
        while (DateTime.UtcNow - since < FlightWait + TimeSpan.FromSeconds(1))
        {
            await Task.Delay(100, cancellationToken);
            if (proxy.Connections != seen) (seen, since) = (proxy.Connections, DateTime.UtcNow);
        }
    }
}
