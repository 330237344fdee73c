using Daiko.Home.Delegation;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Daiko.Terminal.Sessions;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// Whether a market resumes with psk_ke alone is learned by the home server (a background handshake
/// and a psk_ke-only resumption after it first gets tickets there), goes onto every ticket it hands
/// over, and lets a terminal that leaves the choice to it resume with no public-key operation. Real nginx markets,
/// one allowing psk_ke (OpenSSL's AllowNoDHEKEX) and one as shipped.
/// </summary>
[Collection("home card")]
public sealed class PskKeLearningTests : IAsyncLifetime
{
    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _home.DisposeAsync();

    /// <summary>Waits for the home server's psk_ke check of the market (it starts once the first fetch's ticket flight is over).</summary>
    private async Task CheckedAsync(int port, CancellationToken ct)
    {
        Task? check;
        while ((check = _home.Server.Delegation.PskKeCheck("localhost", port)) is null) await Task.Delay(20, ct);
        await check.WaitAsync(ct);
    }

    /// <summary>The session resumed with <paramref name="kex"/> and serves the owner's page; then it is closed.</summary>
    private static async Task AssertServedAsync(DelegatedSession session, PskKeyExchangeMode kex, CancellationToken ct)
    {
        await using (session.Stream)
        {
            Assert.Equal(kex, session.Tls!.KeyExchange);
            Assert.Contains("Alice Example", await DelegationEndToEndTests.GetAsync(session.Stream, ct), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ADeviceOfferingEverNewAlpnsToOneMarket_GetsItCheckedUnderAFewOnly_SoItCannotFillTheChecksOfOtherMarkets()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        // s_server answers whatever ALPN is offered with none: each ALPN is a market profile of its own, each handshake succeeds.
        using var market = await OpenSslServer.StartAsync(_home.Pki);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var alpns = Enumerable.Range(1, DelegationService.MaxAlpnsChecked + 2).Select(i => $"x-{i}").ToList();

        foreach (var alpn in alpns)
        {
            var reply = await control.RequestAsync<PrefetchedReply>(new PrefetchRequest(new MarketAddress("localhost", market.Port, null, alpn), 1), cts.Token);
            Assert.True(reply.Ready >= 1, $"no ticket under {alpn}");
        }

        bool Checked(string alpn) => _home.Server.Delegation.PskKeCheck("localhost", market.Port, null, alpn) is not null;
        while (!alpns.Take(DelegationService.MaxAlpnsChecked).All(Checked)) await Task.Delay(20, cts.Token);
        Assert.DoesNotContain(alpns.Skip(DelegationService.MaxAlpnsChecked), Checked);
    }

    [Fact]
    public async Task AMarketThatResumesWithPskKe_IsLearned_AndATerminalLeftToChoose_ThenRunsNoPublicKeyOperation()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path, new TlsPeerOptions { AllowPskKe = true });
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        // Met for the first time: nothing is known, so the terminal offers psk_dhe_ke (one ECDHE).
        var first = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, kex: null, cancellationToken: cts.Token);
        await AssertServedAsync(first, PskKeyExchangeMode.PskDheKe, cts.Token);

        await CheckedAsync(market.Port, cts.Token);
        Assert.True((await _home.Server.Delegation.Profiles.FindAsync("localhost", market.Port, "localhost", null, cts.Token))!.AcceptsPskKe);

        // The next ticket says so, and the terminal resumes with psk_ke: no key share, no public-key operation.
        var second = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, kex: null, cancellationToken: cts.Token);
        await using (second.Stream)
        {
            Assert.Equal(PskKeyExchangeMode.PskKe, second.Tls!.KeyExchange);
            Assert.Equal(0, second.Counters.PublicKeyOperations);
            Assert.Contains("Alice Example", await DelegationEndToEndTests.GetAsync(second.Stream, cts.Token), StringComparison.Ordinal);
        }
        Assert.True(first.Counters.PublicKeyOperations > 0, "psk_dhe_ke ran no key exchange");

        // A terminal that does not ask (the default) keeps psk_dhe_ke and its forward secrecy, hint or not.
        var plain = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, cancellationToken: cts.Token);
        await plain.Stream.DisposeAsync();
        Assert.Equal(PskKeyExchangeMode.PskDheKe, plain.Tls!.KeyExchange);
    }

    [Fact]
    public async Task AMarketThatStoppedTakingPskKe_IsResumedWithPskDheKe_AndOnceCheckedIsNeverOfferedItAgain()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);
        // What the profile says (the market took psk_ke when it was checked, or another node of the site found so):
        // the market has changed its mind since, and this home server has not checked it yet.
        await _home.Server.Delegation.Profiles.RememberAsync(new MarketProfile("localhost", market.Port, Tls13: true, IssuesTickets: true,
            AcceptsPskKe: true, MaxEarlyData: 0, DateTimeOffset.UtcNow), cts.Token);

        // The ticket says psk_ke, the market says no: the same ticket again with psk_dhe_ke, and the session
        // goes on; the refused try is in the terminal's cost.
        var retried = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, kex: null, cancellationToken: cts.Token);
        await AssertServedAsync(retried, PskKeyExchangeMode.PskDheKe, cts.Token);

        // That first handshake brought tickets, so the home server checks for itself, and its finding stands.
        await CheckedAsync(market.Port, cts.Token);
        var profile = await _home.Server.Delegation.Profiles.FindAsync("localhost", market.Port, "localhost", null, cts.Token);
        Assert.False(profile!.AcceptsPskKe);
        Assert.True(profile.IssuesTickets);

        // Known to refuse it: one resumption with psk_dhe_ke and no refused try before it.
        var plain = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, kex: null, cancellationToken: cts.Token);
        await AssertServedAsync(plain, PskKeyExchangeMode.PskDheKe, cts.Token);
        Assert.True(retried.Counters.RoundTrips > plain.Counters.RoundTrips && retried.Counters.BytesSent > plain.Counters.BytesSent,
            $"the refused psk_ke try is not counted: {retried.Counters.RoundTrips} round trips and {retried.Counters.BytesSent} bytes against {plain.Counters.RoundTrips} and {plain.Counters.BytesSent}");

        // A profile written afterwards from a read made before the check (a refill's, say) does not undo the finding.
        await _home.Server.Delegation.Profiles.RememberAsync(profile with { AcceptsPskKe = true, LearnedAt = DateTimeOffset.UtcNow }, cts.Token);
        var again = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, kex: null, cancellationToken: cts.Token);
        await AssertServedAsync(again, PskKeyExchangeMode.PskDheKe, cts.Token);
        Assert.True(again.Counters.RoundTrips == plain.Counters.RoundTrips && again.Counters.BytesSent < retried.Counters.BytesSent,
            $"psk_ke was offered again: {again.Counters.RoundTrips} round trips and {again.Counters.BytesSent} bytes against {plain.Counters.RoundTrips} and {plain.Counters.BytesSent}");

        // A terminal that insists on psk_ke is told the market refused it, and why.
        var insisted = await Assert.ThrowsAsync<ControlErrorException>(() =>
            connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, PskKeyExchangeMode.PskKe, cancellationToken: cts.Token));
        Assert.Equal(ErrorCode.TicketRefused, insisted.Code);
        Assert.Contains("psk_ke", insisted.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AMarketThatClosesTheConnectionOnThePskKeTry_IsResumedWithPskDheKe_AndTheSameTicket()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        // The terminal's own connections go through a proxy that cuts the first one at its ClientHello
        // (a market that hangs up rather than send an alert); the home server reaches the market directly.
        var hellos = 0;
        using var proxy = RecordTamperingProxy.Start(market.Port, (direction, type, content) =>
            direction == RecordDirection.ClientToServer && type == 22 && Interlocked.Increment(ref hellos) == 1
                ? throw new IOException("the market hangs up")
                : content);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control) { TerminalRoute = (_, _) => ("127.0.0.1", proxy.Port) };
        await _home.Server.Delegation.Profiles.RememberAsync(new MarketProfile("localhost", market.Port, Tls13: true, IssuesTickets: true,
            AcceptsPskKe: true, MaxEarlyData: 0, DateTimeOffset.UtcNow), cts.Token);

        var session = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, kex: null, cancellationToken: cts.Token);
        await AssertServedAsync(session, PskKeyExchangeMode.PskDheKe, cts.Token);
        Assert.Equal(2, proxy.Connections);

        // Insisting on psk_ke, the same cut is a failed session, said plainly.
        Interlocked.Exchange(ref hellos, 0);
        var cut = await Assert.ThrowsAsync<TlsException>(() =>
            connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, PskKeyExchangeMode.PskKe, cancellationToken: cts.Token));
        Assert.Equal(TlsError.TransportClosed, cut.Error);
        Assert.Equal(3, proxy.Connections);
    }
}
