using System.Text;
using Daiko.Cards;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Server;

[CollectionDefinition("home card", DisableParallelization = true)]
public sealed class HomeCardCollection;

/// <summary>Home server and terminal over real TLS, delegating to a real nginx that requires the user's certificate.</summary>
[Collection("home card")]
public sealed class DelegationEndToEndTests : IAsyncLifetime
{
    private HomeFixture _home = null!;
    private NginxServer _market = null!;
    private string _terminal = null!;

    public async Task InitializeAsync()
    {
        _home = HomeFixture.Start();
        _market = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        _terminal = Path.Combine(_home.Dir.Path, "terminal");
    }

    public async Task DisposeAsync()
    {
        _market.Dispose();
        await _home.DisposeAsync();
    }

    private async Task<(ControlConnection Control, AccessCard Access)> EnrolledAndConnectedAsync(CancellationToken ct)
    {
        await TerminalClient.EnrollAsync(_terminal, _home.Endpoint, await _home.NewCodeAsync("phone"), HomeFixture.AccessPin, createAccessCard: HomeFixture.TestAccessCard, cancellationToken: ct);
        var access = AccessCard.Open(_terminal);
        Assert.True(access.Unlock(HomeFixture.AccessPin).Accepted);
        var control = await TerminalClient.ConnectAsync(_terminal, access.DeviceKey, ct);
        return (control, access);
    }

    /// <summary>An enrolled terminal's control channel, with the home card unlocked through it.</summary>
    private async Task<ControlConnection> UnlockedAsync(CancellationToken ct)
    {
        var (control, access) = await EnrolledAndConnectedAsync(ct);
        access.Dispose();
        await new HomeControl(control).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, ct);
        return control;
    }

    internal static async Task<string> GetAsync(Stream stream, CancellationToken ct)
    {
        await stream.WriteAsync("GET /whoami HTTP/1.0\r\nHost: localhost\r\n\r\n"u8.ToArray(), ct);
        using var body = new MemoryStream();
        await stream.CopyToAsync(body, ct);
        return Encoding.UTF8.GetString(body.ToArray());
    }

    [Theory]
    [InlineData(DelegationMode.Resume)]
    [InlineData(DelegationMode.Handoff)]
    [InlineData(DelegationMode.Relay)]
    [InlineData(DelegationMode.Assist)]
    [InlineData(DelegationMode.Auto)]
    public async Task EveryMode_TheMarketSeesTheUsersCertificate(DelegationMode mode)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (control, access) = await EnrolledAndConnectedAsync(cts.Token);
        await using var _ = control;
        await new HomeControl(control).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);

        var session = await new DelegatedConnector(control).ConnectAsync("localhost", _market.Port, mode, cancellationToken: cts.Token);
        var body = await GetAsync(session.Stream, cts.Token);

        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
        if (mode is DelegationMode.Resume) Assert.True(session.Tls!.Resumed);
    }

    [Fact]
    public async Task Prefetch_FetchesTicketsAheadOfNeed_AndResumeRefillsTheCacheInTheBackground()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var market = await OpenSslServer.StartAsync(_home.Pki, new TlsPeerOptions { Tickets = 1 });
        await using var control = await UnlockedAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        Assert.Equal((0, 0), await connector.PrefetchAsync("localhost", market.Port, minimum: 0, cancellationToken: cts.Token));
        Assert.Equal((2, 2), await connector.PrefetchAsync("localhost", market.Port, minimum: 2, cancellationToken: cts.Token));

        for (var i = 0; i < 2; i++)
        {
            var session = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, cancellationToken: cts.Token);
            Assert.True(session.Tls!.Resumed);
            await session.Stream.DisposeAsync();
        }
        // Both prefetched tickets are used: the home server refills one in the background, unasked.
        var ready = 0;
        for (var i = 0; i < 100 && ready == 0; i++)
        {
            await Task.Delay(100, cts.Token);
            ready = (await connector.PrefetchAsync("localhost", market.Port, minimum: 0, cancellationToken: cts.Token)).Ready;
        }
        Assert.Equal(1, ready);
    }

    [Fact]
    public async Task Auto_OnAMarketWithoutTickets_IsHandedOffByTheHomeServer_InOneRequest()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        // gnutls-serv, not openssl s_server (one connection at a time): a second handoff without a ticket has
        // the home server check the market for tickets in the background, beside the terminal's session.
        using var market = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path, new TlsPeerOptions { Tickets = 0 });
        await using var control = await UnlockedAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        for (var i = 0; i < 2; i++)
        {
            // The first time auto meets a market it does not know and hands off (the handshake teaches the
            // profile); the second time it knows the market (MarketProfiles) and hands off again, in one request.
            var session = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Auto, cancellationToken: cts.Token);
            Assert.Equal(DelegationMode.Handoff, session.Mode);
            await session.Stream.WriteAsync("GET / HTTP/1.0\r\n\r\n"u8.ToArray(), cts.Token);
            var first = new byte[1];
            Assert.Equal(1, await session.Stream.ReadAsync(first, cts.Token));
            await session.Stream.DisposeAsync();
        }
        Assert.False((await _home.Server.Delegation.Profiles.FindAsync("localhost", market.Port, "localhost", null, cts.Token))!.IssuesTickets);
    }

    [Fact]
    public async Task Prefetch_BeforeUnlock_IsRefused()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (control, _) = await EnrolledAndConnectedAsync(cts.Token);
        await using var __ = control;

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => new DelegatedConnector(control).PrefetchAsync("localhost", _market.Port, cancellationToken: cts.Token));

        Assert.Equal(ErrorCode.CardNotReady, e.Code);
    }

    [Fact]
    public async Task ASecondTerminal_WithWrongPins_IsRefused_EvenWhileTheCardIsUnlocked()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var control = await UnlockedAsync(cts.Token);
        var second = Path.Combine(_home.Dir.Path, "second-terminal");
        await TerminalClient.EnrollAsync(second, _home.Endpoint, await _home.NewCodeAsync("tablet"), HomeFixture.AccessPin, createAccessCard: HomeFixture.TestAccessCard, cancellationToken: cts.Token);
        using var access = AccessCard.Open(second);
        Assert.True(access.Unlock(HomeFixture.AccessPin).Accepted);
        await using var other = await TerminalClient.ConnectAsync(second, access.DeviceKey, cts.Token);

        var e1 = await Assert.ThrowsAsync<ControlErrorException>(() => new HomeControl(other).UnlockAsync("0000", HomeFixture.Pin2, cts.Token));
        Assert.Equal(ErrorCode.WrongPin1, e1.Code);
        Assert.Equal(2, e1.TriesLeft);
        var e2 = await Assert.ThrowsAsync<ControlErrorException>(() => new HomeControl(other).UnlockAsync(HomeFixture.Pin1, "0000", cts.Token));
        Assert.Equal(ErrorCode.WrongPin2, e2.Code);

        // The wrong PINs unlocked nothing for the second terminal and interrupted nothing for the first.
        var refused = await Assert.ThrowsAsync<ControlErrorException>(() => new DelegatedConnector(other).ConnectAsync("localhost", _market.Port, DelegationMode.Relay, cancellationToken: cts.Token));
        Assert.Equal(ErrorCode.Locked, refused.Code);
        var session = await new DelegatedConnector(control).ConnectAsync("localhost", _market.Port, DelegationMode.Relay, cancellationToken: cts.Token);
        Assert.Contains("Alice Example", await GetAsync(session.Stream, cts.Token), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Delegation_BeforeUnlock_IsRefusedWithAClearError()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (control, _) = await EnrolledAndConnectedAsync(cts.Token);
        await using var __ = control;

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => new DelegatedConnector(control).ConnectAsync("localhost", _market.Port, DelegationMode.Resume, cancellationToken: cts.Token));

        Assert.Equal(ErrorCode.CardNotReady, e.Code);
        Assert.Contains("locked", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WrongPin2_ReportsTriesLeft()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (control, _) = await EnrolledAndConnectedAsync(cts.Token);
        await using var __ = control;

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => new HomeControl(control).UnlockAsync(HomeFixture.Pin1, "0000", cts.Token));

        Assert.Equal(ErrorCode.WrongPin2, e.Code);
        Assert.Equal(2, e.TriesLeft);
        Assert.Contains("2 tries left", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RevokedDevice_LosesItsChannelWithinASecond_AndCannotReconnect()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (control, access) = await EnrolledAndConnectedAsync(cts.Token);
        await using var __ = control;
        await new HomeControl(control).CardStatusAsync(cts.Token);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.True(await _home.Server.Devices.RevokeAsync("phone"));
        // The promise runs from the revocation being stored: the store's own commit (a disk's fsync under load) is not part of it.
        var stored = clock.Elapsed;
        var closedTask = Task.Delay(Timeout.Infinite, control.Closed).ContinueWith(_ => clock.Elapsed, TaskScheduler.Default);
        // Wait longer than the promise, then judge by when the channel closed: within the second (with half a
        // second for a loaded machine to run the continuation).
        var first = await Task.WhenAny(closedTask, Task.Delay(TimeSpan.FromSeconds(10), cts.Token));
        Assert.True(first == closedTask, "the revoked device's channel stayed open for 10 s");
        var closedAfter = await closedTask - stored;
        Assert.True(closedAfter <= TimeSpan.FromSeconds(1.5), $"the revoked device's channel closed {closedAfter.TotalMilliseconds:F0} ms after the revocation was stored, not within a second");

        await using var again = await TerminalClient.ConnectAsync(_terminal, access.DeviceKey, cts.Token);
        var e = await Assert.ThrowsAsync<ControlErrorException>(() => new HomeControl(again).CardStatusAsync(cts.Token));
        Assert.Contains("revoked", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Enrollment_WithAWrongOrReusedCode_IsRefused()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var code = await _home.NewCodeAsync("laptop");
        var wrong = code[..^4] + (code[^4] == 'A' ? "B" : "A") + code[^3..];
        // A code this home never issued (its pin part right for its own secret and this home's key): refused by the home server.
        var (id, secret) = EnrollmentCode.NewIdAndSecret();
        var madeUp = EnrollmentCode.Compose(id + secret, _home.Server.Identity.SpkiHash);
        var e1 = await Assert.ThrowsAsync<ControlErrorException>(() => TerminalClient.EnrollAsync(Path.Combine(_home.Dir.Path, "t1"), _home.Endpoint, madeUp, HomeFixture.AccessPin, cts.Token, createAccessCard: HomeFixture.TestAccessCard));
        Assert.Equal(ErrorCode.EnrollmentRefused, e1.Code);
        // A wrong pin part, or a mistyped secret (the pin part is keyed by it): the terminal refuses to talk, since a man in
        // the middle looks the same, and sends nothing.
        var badSecret = (code[0] == '0' ? "1" : "0") + code[1..];
        foreach (var (mistyped, dir) in new[] { (wrong, "t2"), (badSecret, "t2b") })
        {
            var e2 = await Assert.ThrowsAsync<ControlErrorException>(() => TerminalClient.EnrollAsync(Path.Combine(_home.Dir.Path, dir), _home.Endpoint, mistyped, HomeFixture.AccessPin, cts.Token, createAccessCard: HomeFixture.TestAccessCard));
            Assert.Equal(ErrorCode.HomeMismatch, e2.Code);
            Assert.Contains("nothing was sent", e2.Message, StringComparison.Ordinal);
        }
        await TerminalClient.EnrollAsync(Path.Combine(_home.Dir.Path, "t3"), _home.Endpoint, code, HomeFixture.AccessPin, cts.Token, createAccessCard: HomeFixture.TestAccessCard);
        var e3 = await Assert.ThrowsAsync<ControlErrorException>(() => TerminalClient.EnrollAsync(Path.Combine(_home.Dir.Path, "t4"), _home.Endpoint, code, HomeFixture.AccessPin, cts.Token, createAccessCard: HomeFixture.TestAccessCard));
        Assert.Contains("already used", e3.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AfterEnrollment_TheTerminalRefusesAServerWithoutThePinnedHomeKey_AtTheHomesAddress()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (control, access) = await EnrolledAndConnectedAsync(cts.Token);
        await control.DisposeAsync();
        // Another TLS server (another key, a certificate from another CA) answers where the home was.
        var otherPki = TestPki.Create(Path.Combine(_home.Dir.Path, "impostor-pki"), rootName: "Impostor CA");
        using var impostor = await OpenSslServer.StartAsync(otherPki, new TlsPeerOptions { RequireClientCertificate = false });
        var enrolled = TerminalProfile.Load(_terminal);
        (enrolled with { Home = $"127.0.0.1:{impostor.Port}" }).Save(_terminal);

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => TerminalClient.ConnectAsync(_terminal, access.DeviceKey, cts.Token));
        Assert.Contains("does not hold the pinned home server key", e.Message, StringComparison.Ordinal);

        // The same terminal, pointed back at its own home, connects: the key made the difference.
        enrolled.Save(_terminal);
        await using var again = await TerminalClient.ConnectAsync(_terminal, access.DeviceKey, cts.Token);
        await new HomeControl(again).CardStatusAsync(cts.Token);
        access.Dispose();
    }

    [Fact]
    public async Task ADeviceCertificateThisHomeNeverIssued_IsRefusedInTheHandshake()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ours = await EnrolledAndConnectedAsync(cts.Token);
        await ours.Control.DisposeAsync();
        ours.Access.Dispose();
        // A stranger that knows this home's address and key (so the pin passes) and presents a device
        // certificate of its own making, not one this home server issued.
        var stranger = Path.Combine(_home.Dir.Path, "stranger-terminal");
        Directory.CreateDirectory(stranger);
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        using var certificate = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=daiko device stranger", key, System.Security.Cryptography.HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        File.WriteAllText(Path.Combine(stranger, "device.pem"), certificate.ExportCertificatePem());
        (TerminalProfile.Load(_terminal) with { DeviceId = "stranger", Name = "stranger" }).Save(stranger);

        // TLS 1.3 lets the client finish before the server has judged its certificate: the refusal
        // (a handshake failure on the server) reaches the stranger as a lost channel, and no request is served.
        await using var control = await TerminalClient.ConnectAsync(stranger, key, cts.Token);
        var e = await Assert.ThrowsAsync<ControlErrorException>(() => new HomeControl(control).CardStatusAsync(cts.Token));
        Assert.Equal(ErrorCode.Unavailable, e.Code);
        Assert.Equal(0, _home.Server.OpenConnections);
    }

    [Fact]
    public async Task HomeCardSignsOnlyCertificateVerifyContent()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var control = await UnlockedAsync(cts.Token);

        // Inside an approved assist whose market chain the home server verified: still only CertificateVerify content.
        await control.RequestAsync<AssistReply>(new DelegateRequest(new MarketAddress("localhost", _market.Port, null, null), DelegationMode.Assist), cts.Token);
        Assert.True((await control.RequestAsync<VerdictReply>(new VerifyChainRequest("localhost", [_home.Pki.Server.Certificate.RawData, _home.Pki.Root.RawData]), cts.Token)).Trusted);
        var e = await Assert.ThrowsAsync<ControlErrorException>(() => control.RequestAsync(new SignRequest(SignatureScheme.EcdsaSecp256r1Sha256, new byte[130]), cts.Token));
        Assert.Equal(ErrorCode.BadContent, e.Code);
    }
}
