using Daiko.Cards;
using Daiko.Home.Hosting;
using Daiko.Home.Policy;
using Daiko.Home.Storage;
using Daiko.Protocol;
using Daiko.Terminal;
using Daiko.Protocol.Messages;
using Daiko.Terminal.Sessions;
using Daiko.TestSupport;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// A market that changed its ticket keys (here: another openssl s_server process behind the same
/// address) refuses every ticket the home server holds for it. A <c>fresh</c> delegation drops them
/// and answers from a new full handshake; the terminal asks for one by itself when a ticket is refused.
/// </summary>
[Collection("home card")]
public sealed class FreshTicketTests : IAsyncLifetime
{
    private HomeFixture _home = null!;
    private OpenSslServer _issuer = null!;
    private OpenSslServer _restarted = null!;
    private SlowLink _link = null!;
    private ControlConnection _control = null!;
    private MarketAddress _market = null!;

    public async Task InitializeAsync()
    {
        _home = HomeFixture.Start();
        _issuer = await OpenSslServer.StartAsync(_home.Pki);
        _restarted = await OpenSslServer.StartAsync(_home.Pki);
        _link = SlowLink.Start(_issuer.Port, TimeSpan.Zero, 1e12);
        _control = await _home.UnlockedTerminalAsync(CancellationToken.None);
        _market = new MarketAddress("localhost", _link.Port, "localhost", null);
        // Tickets of the first process, held for the device; then the market "restarts".
        var stocked = await _control.RequestAsync<PrefetchedReply>(new PrefetchRequest(_market, 3), CancellationToken.None);
        Assert.True(stocked.Ready >= 3, $"{stocked.Ready} ticket(s) ready");
        _link.Retarget(_restarted.Port);
    }

    public async Task DisposeAsync()
    {
        await _control.DisposeAsync();
        _link.Dispose();
        _restarted.Dispose();
        _issuer.Dispose();
        await _home.DisposeAsync();
    }

    [Fact]
    public async Task AHeldTicket_IsRefusedByTheRestartedMarket_AFreshOneResumes_AndTheStaleOnesAreGone()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var stale = await TicketAsync(fresh: false, cts.Token);

        var fresh = await TicketAsync(fresh: true, cts.Token);

        // The cache held only the first process's tickets: the fresh one came from a new handshake.
        await Assert.ThrowsAsync<TlsException>(() => ResumeAsync(stale, cts.Token));
        await using (var resumed = await ResumeAsync(fresh, cts.Token)) Assert.True(resumed.Resumed);
        // What was left of the first process's tickets was dropped: a plain request now gets one that resumes.
        var next = await TicketAsync(fresh: false, cts.Token);
        await using (var resumed = await ResumeAsync(next, cts.Token)) Assert.True(resumed.Resumed);
        var line = Assert.Single(await _home.Server.Devices.AuditLogAsync(), a => a.Action == "delegate" && a.Outcome.Contains("stale", StringComparison.Ordinal));
        Assert.Matches(@"^ticket handed over \([1-9]\d* stale ticket\(s\) dropped: the market refused one\)$", line.Outcome);
    }

    [Fact]
    public async Task TheTerminal_AskedToResume_WithARefusedTicket_AsksOnceForAFreshOne_AndResumes()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var connector = new DelegatedConnector(_control);

        var session = await connector.ConnectAsync("localhost", _link.Port, DelegationMode.Resume, cancellationToken: cts.Token);
        await using var stream = session.Stream;

        Assert.Equal(DelegationMode.Resume, session.Mode);
        Assert.True(session.Tls!.Resumed);
        // The refused try is in the terminal's cost (a round trip of its own), and the home server dropped the stale tickets.
        Assert.True(session.Counters.RoundTrips >= 2, $"{session.Counters.RoundTrips} round trip(s)");
        Assert.Contains(await _home.Server.Devices.AuditLogAsync(), a => a.Action == "delegate" && a.Outcome.Contains("stale ticket(s) dropped", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AFreshRequest_DropsOnlyTheAskingDevicesTickets_NotAnotherDevicesForTheSameMarket()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var laptop = await SecondDeviceAsync("laptop", cts.Token);
        var held = await laptop.RequestAsync<PrefetchedReply>(new PrefetchRequest(_market, 3), cts.Token);

        await TicketAsync(fresh: true, cts.Token);

        Assert.Equal(held.Ready, (await laptop.RequestAsync<PrefetchedReply>(new PrefetchRequest(_market, 0), cts.Token)).Ready);
    }

    [Fact]
    public async Task AFreshResume_FromADeviceWhosePolicyForbidsResume_IsRefused_AndDropsNothing()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var policies = new SqlDevicePolicyStore(HomeStore.Sqlite(HomeServer.DatabasePath(_home.HomeDirectory)));
        await policies.SaveAsync("phone", (await policies.FindAsync("phone") ?? DevicePolicy.Default) with { Modes = DevicePolicy.ParseModes("relay") });
        await Task.Delay(DevicePolicies.Freshness * 2, cts.Token);

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => TicketAsync(fresh: true, cts.Token));

        Assert.Equal(ErrorCode.PolicyRefused, e.Code);
        Assert.DoesNotContain(await _home.Server.Devices.AuditLogAsync(), a => a.Outcome.Contains("stale", StringComparison.Ordinal));
        // Allowed again, a plain request is still served from the tickets held before: none was dropped.
        await policies.SaveAsync("phone", (await policies.FindAsync("phone"))! with { Modes = DevicePolicy.AllModes });
        await Task.Delay(DevicePolicies.Freshness * 2, cts.Token);
        await Assert.ThrowsAsync<TlsException>(async () => await ResumeAsync(await TicketAsync(fresh: false, cts.Token), cts.Token));
    }

    /// <summary>Another device of the same owner, enrolled and unlocked over its own channel.</summary>
    private async Task<ControlConnection> SecondDeviceAsync(string name, CancellationToken cancellationToken)
    {
        var terminal = Path.Combine(_home.Dir.Path, name);
        await TerminalClient.EnrollAsync(terminal, _home.Endpoint, await _home.NewCodeAsync(name), HomeFixture.AccessPin,
            createAccessCard: HomeFixture.TestAccessCard, cancellationToken: cancellationToken);
        using var access = AccessCard.Open(terminal);
        Assert.True(access.Unlock(HomeFixture.AccessPin).Accepted);
        var control = await TerminalClient.ConnectAsync(terminal, access.DeviceKey, cancellationToken);
        await new HomeControl(control).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cancellationToken);
        return control;
    }

    private async Task<SessionTicket> TicketAsync(bool fresh, CancellationToken cancellationToken) =>
        (await _control.RequestAsync<TicketReply>(new DelegateRequest(_market, DelegationMode.Resume, fresh), cancellationToken)).Ticket;

    /// <summary>The terminal's own resumption with <paramref name="ticket"/> (a full handshake is refused).</summary>
    private Task<TlsConnection> ResumeAsync(SessionTicket ticket, CancellationToken cancellationToken) =>
        TlsClient.ConnectAsync("127.0.0.1", _link.Port, new TlsClientOptions
        {
            ServerName = "localhost",
            ResumptionTicket = ticket,
            Versions = ticket.Version,
            PskModes = [PskKeyExchangeMode.PskDheKe],
            ResumeOnly = true,
            CertificateValidator = new RefuseAny(),
            HandshakeTimeout = TimeSpan.FromSeconds(20),
        }, cancellationToken);

    private sealed class RefuseAny : IServerCertificateValidator
    {
        public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken) =>
            ValueTask.FromResult(CertificateVerdict.Fail(CertificateProblem.Other, "a full handshake: the ticket was refused"));
    }
}
