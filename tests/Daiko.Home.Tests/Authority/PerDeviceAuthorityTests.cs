using System.Diagnostics;
using System.Text;
using Daiko.Cards;
using Daiko.Home.Hosting;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Server;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Authority;

/// <summary>
/// Each device wields the home card only through its own unlock session, on a real home server with a
/// SoftHSM2 card, delegating to a real nginx that requires the user's certificate.
/// </summary>
[Collection("home card")]
public sealed class PerDeviceAuthorityTests : IAsyncLifetime
{
    private HomeFixture _home = null!;
    private NginxServer _market = null!;

    public async Task InitializeAsync()
    {
        _home = HomeFixture.Start();
        _market = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
    }

    public async Task DisposeAsync()
    {
        _market.Dispose();
        await _home.DisposeAsync();
    }

    private async Task<(ControlConnection Control, string Directory, AccessCard Access)> DeviceAsync(string name, CancellationToken ct)
    {
        var directory = Path.Combine(_home.Dir.Path, "terminal-" + name);
        await TerminalClient.EnrollAsync(directory, _home.Endpoint, await _home.NewCodeAsync(name), HomeFixture.AccessPin, createAccessCard: HomeFixture.TestAccessCard, cancellationToken: ct);
        var access = AccessCard.Open(directory);
        Assert.True(access.Unlock(HomeFixture.AccessPin).Accepted);
        return (await TerminalClient.ConnectAsync(directory, access.DeviceKey, ct), directory, access);
    }

    /// <summary>The phone, enrolled, connected and unlocked with its own PINs; disposing the scope closes it and its access card.</summary>
    private async Task<(ControlConnection Phone, string Directory, AccessCard Access, IAsyncDisposable Scope)> UnlockedPhoneAsync(CancellationToken ct)
    {
        var (phone, directory, access) = await DeviceAsync("phone", ct);
        var scope = new DeviceScope([(phone, access)]);
        await new HomeControl(phone).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, ct);
        return (phone, directory, access, scope);
    }

    /// <summary>
    /// A handoff the device asked for to a market at 127.0.0.1 that accepts and never answers, once the market holds the
    /// home server's connection: the home server's handshake waits on it. Disposing both stops that market.
    /// </summary>
    private static async Task<(Task<ControlMessage> Delegated, System.Net.Sockets.TcpListener Stalled, System.Net.Sockets.TcpClient Market)> HandoffWaitingOnAStalledMarketAsync(ControlConnection device, CancellationToken ct)
    {
        var stalled = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        stalled.Start();
        var accepted = stalled.AcceptTcpClientAsync(ct).AsTask();
        var delegated = device.RequestAsync(new DelegateRequest(new MarketAddress("127.0.0.1", ((System.Net.IPEndPoint)stalled.LocalEndpoint).Port, null, null), DelegationMode.Handoff), ct);
        return (delegated, stalled, await accepted);
    }

    /// <summary>The phone and the tablet, enrolled and connected; disposing the scope closes both and their access cards.</summary>
    private async Task<(ControlConnection Phone, ControlConnection Tablet, IAsyncDisposable Scope)> PhoneAndTabletAsync(CancellationToken ct)
    {
        var (phone, _, phoneAccess) = await DeviceAsync("phone", ct);
        var (tablet, _, tabletAccess) = await DeviceAsync("tablet", ct);
        return (phone, tablet, new DeviceScope([(phone, phoneAccess), (tablet, tabletAccess)]));
    }

    private sealed class DeviceScope(IReadOnlyList<(ControlConnection Control, AccessCard Access)> devices) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            foreach (var (control, access) in devices)
            {
                await control.DisposeAsync();
                access.Dispose();
            }
        }
    }

    private static async Task<ErrorCode> RefusedAsync(Func<Task> request)
    {
        var e = await Assert.ThrowsAsync<ControlErrorException>(request);
        return e.Code;
    }

    [Fact]
    public async Task ADeviceWithoutItsOwnPins_CanNeitherDelegateNorPayNorRead_WhileAnotherIsUnlocked()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var (a, b, devices) = await PhoneAndTabletAsync(cts.Token);
        await using var owned = devices;
        await new HomeControl(a).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);

        foreach (var mode in new[] { DelegationMode.Resume, DelegationMode.Handoff, DelegationMode.Relay, DelegationMode.Assist, DelegationMode.Auto })
        {
            Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => new DelegatedConnector(b).ConnectAsync("localhost", _market.Port, mode, cancellationToken: cts.Token)));
        }
        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => b.RequestAsync(new WalletPayRequest(CoseShaped()), cts.Token)));
        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => b.RequestAsync(new WalletBalanceRequest(), cts.Token)));
        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => b.RequestAsync(new WalletHistoryRequest(), cts.Token)));
        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => b.RequestAsync(new VerifyChainRequest("localhost", [_home.Pki.Server.Certificate.RawData, _home.Pki.Root.RawData]), cts.Token)));
        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => b.RequestAsync(new ApplianceListRequest(), cts.Token)));
        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => b.RequestAsync(new PimSyncRequest(0, []), cts.Token)));
        // The agent's ticket stock and a prefetch are resume by another name: no tickets, no handshake for B either.
        var market = new MarketAddress("localhost", _market.Port, null, null);
        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => b.RequestAsync(new StockRequest(market, 2), cts.Token)));
        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => b.RequestAsync(new PrefetchRequest(market, 2), cts.Token)));
        var refusal = await Assert.ThrowsAsync<ControlErrorException>(() => b.RequestAsync(new WalletBalanceRequest(), cts.Token));
        Assert.Contains("daiko terminal unlock", refusal.Message, StringComparison.Ordinal);
        // card-status stays open, and tells B the card waits for its own PINs.
        Assert.Equal(CardState.RemoteAccessWait, (await new HomeControl(b).CardStatusAsync(cts.Token)).State);
        Assert.Equal(CardState.CryptoReady, (await new HomeControl(a).CardStatusAsync(cts.Token)).State);

        // A is served all along; B, once it gave its own PINs, too.
        Assert.Contains("Alice Example", await GetAsync((await new DelegatedConnector(a).ConnectAsync("localhost", _market.Port, DelegationMode.Relay, cancellationToken: cts.Token)).Stream, cts.Token));
        await new HomeControl(b).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        Assert.Contains("Alice Example", await GetAsync((await new DelegatedConnector(b).ConnectAsync("localhost", _market.Port, DelegationMode.Relay, cancellationToken: cts.Token)).Stream, cts.Token));
        await b.RequestAsync<WalletBalanceReply>(new WalletBalanceRequest(), cts.Token);
    }

    [Fact]
    public async Task ADevice_CancelsOnlyItsOwnPayments_AnotherUnlockedDeviceIsRefusedAndNothingMoves()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        using var bank = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var payees = new SqlPayeeStore(HomeStore.Sqlite(HomeServer.DatabasePath(_home.HomeDirectory)));
        await payees.AddAsync(new Payee("market.example", PayeeRole.Market, market.ExportSubjectPublicKeyInfoPem(), DateTimeOffset.UtcNow), cts.Token);
        await payees.AddAsync(new Payee("bank.example", PayeeRole.Bank, bank.ExportSubjectPublicKeyInfoPem(), DateTimeOffset.UtcNow), cts.Token);
        await Task.Delay(TimeSpan.FromSeconds(1), cts.Token); // a running server applies a payee change within a second
        var (phone, tablet, devices) = await PhoneAndTabletAsync(cts.Token);
        await using var owned = devices;
        await new HomeControl(phone).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        await new HomeControl(tablet).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        var expires = DateTimeOffset.UtcNow.AddHours(1);
        var card = (await phone.RequestAsync<WalletBalanceReply>(new WalletBalanceRequest(), cts.Token)).CardId;
        await phone.RequestAsync<WalletRefillAckReply>(new WalletRefillRequest(new Daiko.Money.Refill("bank.example", card, "fill-1", 1_000, "JPY", expires).Sign(bank)), cts.Token);
        var paid = await phone.RequestAsync<WalletPaymentReply>(new WalletPayRequest(
            new Daiko.Money.PaymentRequest("market.example", "order-1", "q-1", 300, "JPY", expires, "https://market.example/").Sign(market)), cts.Token);
        async Task<long> BalanceAsync() => (await phone.RequestAsync<WalletBalanceReply>(new WalletBalanceRequest(), cts.Token)).Balances.Single().Amount;

        var refused = await Assert.ThrowsAsync<ControlErrorException>(() => tablet.RequestAsync(new WalletCancelRequest(paid.PaymentId), cts.Token));

        Assert.Equal(ErrorCode.PolicyRefused, refused.Code);
        Assert.Contains($"payment {paid.PaymentId} was not made by this device", refused.Message, StringComparison.Ordinal);
        Assert.Contains(await _home.Server.Devices.AuditLogAsync(), e => e.Action == "wallet-cancel" && e.Outcome == "refused by policy (own payments)");
        Assert.Equal(700, await BalanceAsync());
        // The device that paid may cancel it: the card signs the cancellation for the market.
        var cancellation = await phone.RequestAsync<WalletCancellationReply>(new WalletCancelRequest(paid.PaymentId), cts.Token);
        Assert.Equal(paid.PaymentId, Daiko.Money.MoneyCodec.ReadUnverified<Daiko.Money.Cancellation>(cancellation.Cancellation).PaymentId);
    }

    [Fact]
    public async Task TheSessionBelongsToTheDevice_AReconnectingChannelFindsItAgain_AndLockEndsItForThatDeviceOnly()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var (a, dirA, accessA) = await DeviceAsync("phone", cts.Token);
        var (b, _, accessB) = await DeviceAsync("tablet", cts.Token);
        await using var _b = b;
        using var __b = accessB;
        using var __a = accessA;
        await new HomeControl(a).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        await new HomeControl(b).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        await a.DisposeAsync();

        await using var again = await TerminalClient.ConnectAsync(dirA, accessA.DeviceKey, cts.Token);
        await again.RequestAsync<WalletBalanceReply>(new WalletBalanceRequest(), cts.Token);
        await new HomeControl(again).LockAsync(cts.Token);

        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => again.RequestAsync(new WalletBalanceRequest(), cts.Token)));
        await b.RequestAsync<WalletBalanceReply>(new WalletBalanceRequest(), cts.Token);
        Assert.Equal(HomeCardState.CryptoReady, _home.Card.State);
    }

    [Fact]
    public async Task AWrongPin2FromAnotherDevice_NeitherUnlocksItNorInterruptsTheFirst()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var (a, b, devices) = await PhoneAndTabletAsync(cts.Token);
        await using var owned = devices;
        await new HomeControl(a).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => new HomeControl(b).UnlockAsync(HomeFixture.Pin1, "0000", cts.Token));
        Assert.Equal(ErrorCode.WrongPin2, e.Code);
        Assert.Equal(2, e.TriesLeft);

        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => b.RequestAsync(new WalletBalanceRequest(), cts.Token)));
        Assert.Contains("Alice Example", await GetAsync((await new DelegatedConnector(a).ConnectAsync("localhost", _market.Port, DelegationMode.Assist, cancellationToken: cts.Token)).Stream, cts.Token));
    }

    [Theory]
    [InlineData(DelegationMode.Relay, "lock")]
    [InlineData(DelegationMode.Handoff, "lock")]
    [InlineData(DelegationMode.Relay, "revoke")]
    [InlineData(DelegationMode.Relay, "idle")]
    public async Task EndingTheSession_CutsTheDevicesOpenRelaysWithinASecond(DelegationMode mode, string how)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var (a, dirA, accessA) = await DeviceAsync("phone", cts.Token);
        await using var _a = a;
        using var __a = accessA;
        await new HomeControl(a).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        var clock = new Stopwatch();
        var pending = await KeptOpenSessionAsync(a, mode, clock, cts.Token);
        await Task.Delay(200, cts.Token);
        Assert.False(pending.IsCompleted, "the relay ended before the session did");

        // Lock is told on another channel of the same device: the relay's own channel stays open.
        await using var other = await TerminalClient.ConnectAsync(dirA, accessA.DeviceKey, cts.Token);
        var id = (await _home.Server.Devices.FindAsync("phone"))!.Id;
        clock.Start();
        switch (how)
        {
            case "lock":
                await new HomeControl(other).LockAsync(cts.Token);
                break;
            case "revoke":
                Assert.True(await _home.Server.Devices.RevokeAsync("phone"));
                break;
            default:
                // The device's idle timer ran out: its stored last use is older than the timeout.
                await new SqlDeviceSessionStore(HomeStore.Sqlite(HomeServer.DatabasePath(_home.HomeDirectory)))
                    .SaveAsync(new DeviceSession(id, "idle", DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddMinutes(-11)), cts.Token);
                break;
        }
        // The promise runs from the change being stored: the store's own commit (a disk's fsync under load) is not part of it.
        var stored = clock.Elapsed;
        var ended = await Task.WhenAny(pending, Task.Delay(TimeSpan.FromSeconds(10), cts.Token));
        Assert.True(ended == pending, $"the {mode} relay stayed open 10 s after {how}");
        var after = await pending - stored;
        // Within the second (with half a second for a loaded machine to run the continuation); a cut made while the
        // change was being stored counts as within it.
        Assert.True(after <= TimeSpan.FromSeconds(1.5), $"the {mode} relay ended {after.TotalMilliseconds:F0} ms after {how} was stored, not within a second");
    }

    [Theory]
    [InlineData(DelegationMode.Relay)]
    [InlineData(DelegationMode.Handoff)]
    public async Task APolicyThatTakesAwayItsMarket_EndsTheDevicesOpenSessions_OneThatWidensOrChangesItsTicketCountDoesNot(DelegationMode mode)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var (a, _, accessA) = await DeviceAsync("phone", cts.Token);
        await using var _a = a;
        using var __a = accessA;
        await new HomeControl(a).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        var pending = await KeptOpenSessionAsync(a, mode, new Stopwatch(), cts.Token);
        var policies = new SqlDevicePolicyStore(HomeStore.Sqlite(HomeServer.DatabasePath(_home.HomeDirectory)));
        var before = await policies.FindAsync("phone", cts.Token) ?? Daiko.Home.Policy.DevicePolicy.Default;

        // Fewer tickets, and one more market: the session the device has open is still one its policy allows.
        await policies.SaveAsync("phone", before with { MaxTickets = 2, Markets = Daiko.Home.Policy.DevicePolicy.ParseMarkets(before.MarketsText + ",shop.example") }, cts.Token);
        await Task.Delay(TimeSpan.FromSeconds(3), cts.Token);
        Assert.False(pending.IsCompleted, $"the {mode} session ended after its policy was widened and its ticket count changed");

        // The market taken off the device's list: what runs there ends at the server's next look (a second or so).
        await policies.SaveAsync("phone", before with { Markets = Daiko.Home.Policy.DevicePolicy.ParseMarkets("shop.example") }, cts.Token);
        var ended = await Task.WhenAny(pending, Task.Delay(TimeSpan.FromSeconds(10), cts.Token));
        Assert.True(ended == pending, $"the {mode} session to a market the policy no longer allows stayed open 10 s");
        // The device's session with the card is still open: only what the new policy forbids went.
        Assert.Equal(CardState.CryptoReady, (await new HomeControl(a).CardStatusAsync(cts.Token)).State);
        var refused = await Assert.ThrowsAsync<ControlErrorException>(() => new DelegatedConnector(a).ConnectAsync("localhost", _market.Port, mode, cancellationToken: cts.Token));
        Assert.Equal(ErrorCode.PolicyRefused, refused.Code);
    }

    [Fact]
    public async Task Sign_IsRefusedOutsideAnApprovedAssist_ForAnotherMarket_AndASecondTime()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var (a, _, accessA) = await DeviceAsync("phone", cts.Token);
        await using var _a = a;
        using var __a = accessA;
        await new HomeControl(a).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        var content = CertificateVerifyContent();
        var sign = new SignRequest(SignatureScheme.EcdsaSecp256r1Sha256, content);
        List<byte[]> marketChain = [_home.Pki.Server.Certificate.RawData, _home.Pki.Root.RawData];

        // No delegate at all.
        Assert.Equal(ErrorCode.Refused, await RefusedAsync(() => a.RequestAsync(sign, cts.Token)));
        // An approved assist for one market, whose chain was never verified.
        await a.RequestAsync<AssistReply>(new DelegateRequest(new MarketAddress("localhost", _market.Port, null, null), DelegationMode.Assist), cts.Token);
        Assert.Equal(ErrorCode.Refused, await RefusedAsync(() => a.RequestAsync(sign, cts.Token)));
        // An assist for 127.0.0.1 (another market by name), with a trusted chain verified for localhost.
        await a.RequestAsync<AssistReply>(new DelegateRequest(new MarketAddress("127.0.0.1", _market.Port, null, null), DelegationMode.Assist), cts.Token);
        Assert.True((await a.RequestAsync<VerdictReply>(new VerifyChainRequest("localhost", marketChain), cts.Token)).Trusted);
        Assert.Equal(ErrorCode.Refused, await RefusedAsync(() => a.RequestAsync(sign, cts.Token)));

        // A real assist handshake signs once, for the market it named …
        Assert.Contains("Alice Example", await GetAsync((await new DelegatedConnector(a).ConnectAsync("localhost", _market.Port, DelegationMode.Assist, cancellationToken: cts.Token)).Stream, cts.Token));
        // … and never again for the same approval: TLS 1.3 content without its handshake is refused, and uses it up.
        await a.RequestAsync<AssistReply>(new DelegateRequest(new MarketAddress("localhost", _market.Port, null, null), DelegationMode.Assist), cts.Token);
        Assert.True((await a.RequestAsync<VerdictReply>(new VerifyChainRequest("localhost", marketChain), cts.Token)).Trusted);
        Assert.Equal(ErrorCode.BadContent, await RefusedAsync(() => a.RequestAsync(sign, cts.Token)));
        Assert.Equal(ErrorCode.Refused, await RefusedAsync(() => a.RequestAsync(sign, cts.Token)));

        var signs = (await _home.Server.Devices.AuditLogAsync()).Where(e => e.Action == "sign").ToList();
        Assert.Contains(signs, e => e.Outcome == "signed" && e.Market == $"localhost:{_market.Port}");
        Assert.DoesNotContain(signs, e => e.Outcome == "signed" && e.Market is null);
        Assert.Equal(5, signs.Count(e => e.Outcome.StartsWith("refused", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task ASessionEndedElsewhere_TakesTheDevicesCachedTickets_AndItsStockIsRefused()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var (a, _, _, scope) = await UnlockedPhoneAsync(cts.Token);
        await using var owned = scope;
        var market = new MarketAddress("localhost", _market.Port, null, null);
        var ready = (await a.RequestAsync<PrefetchedReply>(new PrefetchRequest(market, 2), cts.Token)).Ready;
        Assert.True(ready >= 2, $"{ready} ticket(s) ready");
        var phone = Assert.Single(await _home.Server.Devices.ListAsync(cts.Token)).Id;
        var purges = _home.Server.Delegation.PurgesOf(phone);

        // Another node ended the session (a lock there): the row is gone from the store this server shares.
        await EndTheSessionAsAnotherNodeWouldAsync(cts.Token);
        // The device's next request finds no session (or the quarter-second sweep found it first): either way its
        // cached tickets are gone by the time it is refused.
        Assert.Equal(ErrorCode.Locked, await RefusedAsync(() => a.RequestAsync(new StockRequest(market, 2), cts.Token)));

        Assert.True(_home.Server.Delegation.PurgesOf(phone) > purges);
        Assert.Equal(0, _home.Server.Delegation.Tickets.CountsByMarket().Sum(m => m.Entries));
    }

    [Fact]
    public async Task ALockFromTheDevicesOtherChannel_WhileAHandshakeWaitsOnAStalledMarket_IsAnsweredLocked_NotInternal()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (phone, directory, access, scope) = await UnlockedPhoneAsync(cts.Token);
        await using var owned = scope;
        await using var other = await TerminalClient.ConnectAsync(directory, access.DeviceKey, cts.Token);
        var (delegated, stalled, market) = await HandoffWaitingOnAStalledMarketAsync(phone, cts.Token);
        using var _ = stalled;
        using var __ = market;
        var clock = Stopwatch.StartNew();
        await new HomeControl(other).LockAsync(cts.Token);

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => delegated);
        Assert.Equal(ErrorCode.Locked, e.Code);
        Assert.Contains("session ended while the request was served", e.Message, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"answered after {clock.Elapsed}");
    }

    [Fact]
    public async Task APolicyThatTakesAwayTheMarket_WhileAHandshakeWaitsOnIt_IsAnsweredWithThePolicy_NotWithUnlock()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (phone, _, _, scope) = await UnlockedPhoneAsync(cts.Token);
        await using var owned = scope;
        var policies = new SqlDevicePolicyStore(HomeStore.Sqlite(HomeServer.DatabasePath(_home.HomeDirectory)));
        var before = await policies.FindAsync("phone", cts.Token) ?? Daiko.Home.Policy.DevicePolicy.Default;
        // Right after the phone connected: the server may not have looked at its policy yet.
        var (delegated, stalled, market) = await HandoffWaitingOnAStalledMarketAsync(phone, cts.Token);
        using var _ = stalled;
        using var __ = market;
        await policies.SaveAsync("phone", before with { Markets = Daiko.Home.Policy.DevicePolicy.ParseMarkets("shop.example") }, cts.Token);

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => delegated);
        Assert.Equal(ErrorCode.PolicyRefused, e.Code);
        Assert.Equal(Daiko.Home.Control.RequestDispatcher.PolicyCutSentence, e.Message);
        Assert.DoesNotContain("unlock", e.Message, StringComparison.Ordinal);
        Assert.Equal(CardState.CryptoReady, (await new HomeControl(phone).CardStatusAsync(cts.Token)).State);
    }

    [Fact]
    public async Task TheLogMailedOnDemand_IsOnceAMinuteADevice_AnotherDeviceStillMay()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (phone, tablet, devices) = await PhoneAndTabletAsync(cts.Token);
        await using var owned = devices;
        await new HomeControl(phone).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        await new HomeControl(tablet).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);

        // No mail address is set here: the first asks are answered with that, and count all the same.
        var first = await Assert.ThrowsAsync<ControlErrorException>(() => phone.RequestAsync(new WalletMailRequest(), cts.Token));
        Assert.Contains("no mail address is configured", first.Message, StringComparison.Ordinal);
        var again = await Assert.ThrowsAsync<ControlErrorException>(() => phone.RequestAsync(new WalletMailRequest(), cts.Token));
        Assert.Equal(ErrorCode.Refused, again.Code);
        Assert.Contains("less than a minute ago", again.Message, StringComparison.Ordinal);
        var other = await Assert.ThrowsAsync<ControlErrorException>(() => tablet.RequestAsync(new WalletMailRequest(), cts.Token));
        Assert.Contains("no mail address is configured", other.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ManyPrefetchesAtOnce_ToAStalledMarket_HoldNoMoreThanTheDevicesPlaces()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var stalled = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        stalled.Start();
        var held = new List<System.Net.Sockets.TcpClient>();
        var accepting = Task.Run(async () =>
        {
            try
            {
                while (true) held.Add(await stalled.AcceptTcpClientAsync(cts.Token));
            }
            catch (OperationCanceledException)
            {
            }
        });
        var (phone, _, _, scope) = await UnlockedPhoneAsync(cts.Token);
        await using (scope)
        {
            var market = new MarketAddress("127.0.0.1", ((System.Net.IPEndPoint)stalled.LocalEndpoint).Port, null, null);

            var asked = Enumerable.Range(0, 3 * Daiko.Home.Delegation.DelegationService.MaxFetchesPerDevice)
                .Select(_ => phone.RequestAsync(new PrefetchRequest(market, 1), cts.Token)).ToList();
            var clock = Stopwatch.StartNew();
            while (held.Count < Daiko.Home.Delegation.DelegationService.MaxFetchesPerDevice && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(50, cts.Token);
            await Task.Delay(TimeSpan.FromSeconds(1), cts.Token);

            Assert.Equal(Daiko.Home.Delegation.DelegationService.MaxFetchesPerDevice, held.Count);
            Assert.All(asked, a => Assert.False(a.IsCompleted));
        }
        await cts.CancelAsync();
        await accepting;
        foreach (var c in held) c.Dispose();
    }

    /// <summary>
    /// Another node ends the device's session, or ends it and opens another (a lock and an unlock quicker
    /// than a sweep), with no work of the device running here and no request from it: the sweep alone finds
    /// it, and what was held for the device under the session that ended goes.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ASessionEndedElsewhere_OrEndedAndOpenedAgain_IsFoundByTheSweepAlone_AndTakesTheDevicesTickets(bool openedAgain)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var (a, _, _, scope) = await UnlockedPhoneAsync(cts.Token);
        await using var owned = scope;
        var market = new MarketAddress("localhost", _market.Port, null, null);
        Assert.True((await a.RequestAsync<PrefetchedReply>(new PrefetchRequest(market, 2), cts.Token)).Ready >= 2);
        // A second unlock here starts a new session: the device's work of the first is ended, its tickets stay.
        await new HomeControl(a).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        var phone = Assert.Single(await _home.Server.Devices.ListAsync(cts.Token)).Id;
        var purges = _home.Server.Delegation.PurgesOf(phone);
        Assert.True(_home.Server.Delegation.Tickets.CountsByMarket().Sum(m => m.Entries) >= 2);

        await AsAnotherNodeWouldAsync(openedAgain ? "UPDATE device_sessions SET session_id = 'opened-again-on-another-node'" : "DELETE FROM device_sessions", cts.Token);
        var clock = Stopwatch.StartNew();
        while (_home.Server.Delegation.PurgesOf(phone) == purges && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(50, cts.Token);

        Assert.True(_home.Server.Delegation.PurgesOf(phone) > purges, "the sweep did not find the session ended");
        Assert.Equal(0, _home.Server.Delegation.Tickets.CountsByMarket().Sum(m => m.Entries));
        // Opened again, the device is served under its new session from then on.
        if (openedAgain) Assert.True((await a.RequestAsync<PrefetchedReply>(new PrefetchRequest(market, 1), cts.Token)).Ready >= 1);
    }

    /// <summary>Ends the one device session in the store this server shares, as another node's lock would.</summary>
    private Task EndTheSessionAsAnotherNodeWouldAsync(CancellationToken ct) => AsAnotherNodeWouldAsync("DELETE FROM device_sessions", ct);

    /// <summary>Changes the one device session in the store this server shares with <paramref name="sql"/>, as another node would.</summary>
    private async Task AsAnotherNodeWouldAsync(string sql, CancellationToken ct)
    {
        await using var db = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={HomeServer.DatabasePath(_home.HomeDirectory)}");
        await db.OpenAsync(ct);
        await using var edit = db.CreateCommand();
        edit.CommandText = sql;
        Assert.Equal(1, await edit.ExecuteNonQueryAsync(ct));
    }

    /// <summary>A well-formed COSE_Sign1 (signed by nobody the purse knows): the refusal must come from the session check.</summary>
    private static byte[] CoseShaped()
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        return System.Security.Cryptography.Cose.CoseSign1Message.SignEmbedded([0xa0],
            new System.Security.Cryptography.Cose.CoseSigner(key, System.Security.Cryptography.HashAlgorithmName.SHA256));
    }

    internal static byte[] CertificateVerifyContent() =>
        [.. Enumerable.Repeat((byte)0x20, 64), .. "TLS 1.3, client CertificateVerify"u8, 0, .. System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)];

    /// <summary>
    /// A delegated session to the market in <paramref name="mode"/> after a keep-alive exchange (the market leaves the
    /// connection open afterwards), and the read that ends when the session does (<see cref="ReadUntilEndAsync"/>).
    /// </summary>
    private async Task<Task<TimeSpan>> KeptOpenSessionAsync(ControlConnection device, DelegationMode mode, Stopwatch clock, CancellationToken ct)
    {
        var session = await new DelegatedConnector(device).ConnectAsync("localhost", _market.Port, mode, cancellationToken: ct);
        await session.Stream.WriteAsync("GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n"u8.ToArray(), ct);
        Assert.True(await session.Stream.ReadAsync(new byte[16384], ct) > 0);
        return ReadUntilEndAsync(session.Stream, clock, ct);
    }

    private static async Task<TimeSpan> ReadUntilEndAsync(Stream stream, Stopwatch clock, CancellationToken ct)
    {
        var buffer = new byte[16384];
        try
        {
            while (await stream.ReadAsync(buffer, ct) > 0) { }
        }
        catch (Exception e) when (e is IOException or ControlErrorException or TlsException or ObjectDisposedException)
        {
        }
        return clock.Elapsed;
    }

    private static async Task<string> GetAsync(Stream stream, CancellationToken ct)
    {
        await stream.WriteAsync("GET /whoami HTTP/1.0\r\nHost: localhost\r\n\r\n"u8.ToArray(), ct);
        using var body = new MemoryStream();
        await stream.CopyToAsync(body, ct);
        return Encoding.UTF8.GetString(body.ToArray());
    }
}
