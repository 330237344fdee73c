using System.Net;
using Daiko.Cards;
using Daiko.Home.Appliances;
using Daiko.Home.Hosting;
using Daiko.Home.Policy;
using Daiko.Home.Storage;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Samples.Appliances;
using Daiko.Terminal;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// The device policy as a running home server applies it, over the real control channel, against nginx
/// (its tickets live 300 s) and a sample appliance: every refusal is <c>policy-refused</c> and audited
/// with its rule.
/// </summary>
[Collection("home card")]
public sealed class DevicePolicyOverControlTests : IAsyncLifetime
{
    private HomeFixture _home = null!;
    private NginxServer _market = null!;
    private SampleThermostat _thermostat = null!;
    private ControlConnection _control = null!;
    private AccessCard _access = null!;
    private int _drops;

    public async Task InitializeAsync()
    {
        _home = HomeFixture.Start();
        _market = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        _thermostat = await SampleThermostat.StartAsync(IPAddress.Loopback);
        await _home.Server.Appliances.RegisterAsync(new Appliance("living-room", _thermostat.Endpoint));
        await _home.Server.Appliances.RegisterAsync(new Appliance("garage", _thermostat.Endpoint));
        var terminal = Path.Combine(_home.Dir.Path, "terminal");
        await TerminalClient.EnrollAsync(terminal, _home.Endpoint, await _home.NewCodeAsync("phone"), HomeFixture.AccessPin, createAccessCard: HomeFixture.TestAccessCard);
        _access = AccessCard.Open(terminal);
        _access.Unlock(HomeFixture.AccessPin);
        _control = new ControlConnection(await TerminalClient.ConnectStreamAsync(terminal, _access.DeviceKey, CancellationToken.None))
        {
            OnNotice = n => { if (n is DropTicketsNotice) Interlocked.Increment(ref _drops); },
        };
        _control.Start();
        await new HomeControl(_control).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _control.DisposeAsync();
        _access.Dispose();
        await _thermostat.DisposeAsync();
        _market.Dispose();
        await _home.DisposeAsync();
    }

    /// <summary>Sets the phone's policy in the home store, as <c>home device policy</c> does, and waits until the server reads it.</summary>
    private async Task PolicyAsync(Func<DevicePolicy, DevicePolicy> change)
    {
        var store = new SqlDevicePolicyStore(HomeStore.Sqlite(HomeServer.DatabasePath(_home.HomeDirectory)));
        await store.SaveAsync("phone", change(await store.FindAsync("phone") ?? DevicePolicy.Default));
        await Task.Delay(DevicePolicies.Freshness * 2);
    }

    /// <summary>
    /// A change of the phone's ticket terms, once the home server's policy watcher has acted on it: it
    /// tells the device to drop its tickets (which then stop counting), unless it first saw the device
    /// under the new terms already (then nothing comes). Bounded wait.
    /// </summary>
    private async Task TicketTermsAsync(Func<DevicePolicy, DevicePolicy> change)
    {
        var drops = Volatile.Read(ref _drops);
        await PolicyAsync(change);
        for (var i = 0; i < 30 && Volatile.Read(ref _drops) == drops; i++) await Task.Delay(100);
    }

    /// <summary>The tickets the home server's cache holds, once no refill has added any for half a second (bounded wait).</summary>
    private async Task<int> SettledCacheCountAsync()
    {
        int Count() => _home.Server.Delegation.Tickets.CountsByMarket().Sum(m => m.Entries);
        var last = Count();
        for (var i = 0; i < 20; i++)
        {
            await Task.Delay(500);
            var now = Count();
            if (now == last && now > 0) return now;
            last = now;
        }
        return last;
    }

    private Task<ControlMessage> DelegateAsync(DelegationMode mode) =>
        _control.RequestAsync(new DelegateRequest(new MarketAddress("localhost", _market.Port, null, null), mode), CancellationToken.None);

    private async Task AssertAuditedAsync(string outcome) =>
        Assert.Contains(await _home.Server.Devices.AuditLogAsync(), e => e.Outcome == outcome);

    [Fact]
    public async Task MaxTickets_ADeviceHoldsNoMoreUnexpiredTicketsPerMarket_AutoServesAnotherAllowedMode()
    {
        await TicketTermsAsync(p => p with { MaxTickets = 2 });

        Assert.IsType<TicketReply>(await DelegateAsync(DelegationMode.Resume));
        Assert.IsType<TicketReply>(await DelegateAsync(DelegationMode.Resume));
        // The refills those set off, settled: the cache holds tickets for the phone.
        var cached = await SettledCacheCountAsync();
        Assert.True(cached > 0, "the refills left no ticket in the cache");
        var refused = await Assert.ThrowsAsync<ControlErrorException>(() => DelegateAsync(DelegationMode.Resume));
        // The ticket the refused request took from the cache went back: none is lost to a refusal.
        Assert.Equal(cached, await SettledCacheCountAsync());
        var auto = await DelegateAsync(DelegationMode.Auto);

        Assert.Equal(ErrorCode.PolicyRefused, refused.Code);
        Assert.StartsWith("policy-refused: this device already holds 2 unexpired ticket(s)", refused.Message, StringComparison.Ordinal);
        await AssertAuditedAsync("refused by policy (max-tickets)");
        Assert.IsType<SecretsReply>(auto);
    }

    [Fact]
    public async Task MaxTickets_CountsOneMarketOnce_HoweverItsNameIsSpelled()
    {
        await TicketTermsAsync(p => p with { Markets = DevicePolicy.ParseMarkets("localhost,127.0.0.1"), MaxTickets = 1 });
        Task<ControlMessage> Resume(string host, string? sni = null) =>
            _control.RequestAsync(new DelegateRequest(new MarketAddress(host, _market.Port, sni, null), DelegationMode.Resume), CancellationToken.None);

        Assert.IsType<TicketReply>(await Resume("localhost"));
        // Other spellings, and the same server name reached by its address: a ticket is good for the name, so it counts there.
        foreach (var (spelling, sni) in new[] { ("LOCALHOST", null), ("Localhost", null), ("localhost.", null), ("LocalHost..", null), ("127.0.0.1", "localhost") })
        {
            var refused = await Assert.ThrowsAsync<ControlErrorException>(() => Resume(spelling, sni));
            Assert.Equal(ErrorCode.PolicyRefused, refused.Code);
            Assert.StartsWith("policy-refused: this device already holds 1 unexpired ticket(s)", refused.Message, StringComparison.Ordinal);
        }
        Assert.Equal(5, (await _home.Server.Devices.AuditLogAsync()).Count(e => e.Market == $"localhost:{_market.Port}" && e.Action == "delegate"));
    }

    [Fact]
    public async Task AServerNameTheMarketsDoNotAllow_IsRefusedAtAnAllowedHost_NoSessionIsOpenedThere()
    {
        // A market at an allowed address whose certificate names bank.example, which the phone may not use.
        _home.Pki.WithServer(_home.Pki.IssueServer("bank", "bank.example"));
        using var bank = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        await PolicyAsync(p => p with { Markets = DevicePolicy.ParseMarkets("localhost") });
        Task<ControlMessage> Relay(string host, string? sni) =>
            _control.RequestAsync(new DelegateRequest(new MarketAddress(host, bank.Port, sni, null), DelegationMode.Relay), CancellationToken.None);

        var byName = await Assert.ThrowsAsync<ControlErrorException>(() => Relay("bank.example", null));
        foreach (var sni in new[] { "bank.example", "BANK.example." })
        {
            var bySni = await Assert.ThrowsAsync<ControlErrorException>(() => Relay("localhost", sni));
            Assert.Equal(ErrorCode.PolicyRefused, bySni.Code);
            Assert.Contains("may not use the market bank.example", bySni.Message, StringComparison.Ordinal);
        }

        Assert.Equal(ErrorCode.PolicyRefused, byName.Code);
        Assert.DoesNotContain(await _home.Server.Devices.AuditLogAsync(), e => e.Outcome == "relay opened");
        Assert.Contains(await _home.Server.Devices.AuditLogAsync(), e => e.Market == $"localhost:{bank.Port} as bank.example" && e.Outcome == "refused by policy (markets)");

        // Listed by the owner, the same request is served: it is the list that refused it.
        await PolicyAsync(p => p with { Markets = DevicePolicy.ParseMarkets("localhost,bank.example") });
        Assert.IsType<RelayReply>(await Relay("localhost", "bank.example"));
    }

    [Fact]
    public async Task TheOwnersConsole_ReachesOnlyWhatSomeDeviceMay_APayeeCannotPointItIntoTheHomeNetwork()
    {
        await PolicyAsync(p => p with { Markets = DevicePolicy.ParseMarkets("*") });
        var reach = await _home.Server.Policies.ReachOfAnyDeviceAsync(_home.Server.Devices);
        var refused = await Assert.ThrowsAsync<PolicyRefusedException>(() => reach.ResolveAsync("127.0.0.1", _market.Port, null, CancellationToken.None));
        Assert.Equal(PolicyRule.PrivateAddress, refused.Rule);

        await PolicyAsync(p => p with { Markets = DevicePolicy.ParseMarkets("*,127.0.0.1") });
        reach = await _home.Server.Policies.ReachOfAnyDeviceAsync(_home.Server.Devices);
        Assert.Contains(IPAddress.Loopback, await reach.ResolveAsync("127.0.0.1", _market.Port, null, CancellationToken.None));

        // A revoked device's list no longer counts.
        await _home.Server.Devices.RevokeAsync("phone");
        reach = await _home.Server.Policies.ReachOfAnyDeviceAsync(_home.Server.Devices);
        await Assert.ThrowsAsync<PolicyRefusedException>(() => reach.ResolveAsync("127.0.0.1", _market.Port, null, CancellationToken.None));
    }

    [Fact]
    public async Task TicketLifetime_NoTicketHandedOutlivesThePolicy_AndNoHandoffExportsAResumptionSecret()
    {
        await PolicyAsync(p => p with { TicketLifetime = TimeSpan.FromSeconds(60) });

        var refused = await Assert.ThrowsAsync<ControlErrorException>(() => DelegateAsync(DelegationMode.Resume));
        var handoff = Assert.IsType<SecretsReply>(await DelegateAsync(DelegationMode.Handoff));

        Assert.Equal(ErrorCode.PolicyRefused, refused.Code);
        Assert.Contains("live longer than this device may hold one (60s)", refused.Message, StringComparison.Ordinal);
        await AssertAuditedAsync("refused by policy (ticket-lifetime)");
        Assert.False(handoff.Session.CanResume, "the handed-over session carries a resumption secret");

        await PolicyAsync(p => p with { TicketLifetime = TimeSpan.FromMinutes(10) });
        var ticket = Assert.IsType<TicketReply>(await DelegateAsync(DelegationMode.Resume)).Ticket;
        Assert.True(ticket.ExpiresAt - DateTimeOffset.UtcNow <= TimeSpan.FromMinutes(10));
        Assert.False(Assert.IsType<SecretsReply>(await DelegateAsync(DelegationMode.Handoff)).Session.CanResume);

        // Without a lifetime limit neither: the device's tickets are only those handed to it, each counted (max-tickets).
        await PolicyAsync(p => p with { TicketLifetime = null });
        Assert.False(Assert.IsType<SecretsReply>(await DelegateAsync(DelegationMode.Handoff)).Session.CanResume, "a handoff under the default policy carries a resumption secret");
    }

    [Fact]
    public async Task Appliances_OnlyTheNamedOnesAreListedAndControlled()
    {
        await PolicyAsync(p => p with { Appliances = ["living-room"] });
        var home = new HomeControl(_control);

        Assert.Equal(["living-room"], await home.AppliancesAsync(CancellationToken.None));
        Assert.NotEmpty(await home.ApplianceStateAsync("living-room", CancellationToken.None));
        var command = await Assert.ThrowsAsync<ControlErrorException>(() => home.ApplianceCommandAsync("garage", "set-target", [KeyValuePair.Create("celsius", "30")], CancellationToken.None));
        var state = await Assert.ThrowsAsync<ControlErrorException>(() => home.ApplianceStateAsync("garage", CancellationToken.None));

        Assert.Equal(ErrorCode.PolicyRefused, command.Code);
        Assert.Equal(ErrorCode.PolicyRefused, state.Code);
        Assert.Equal("policy-refused: this device may not use the appliance 'garage' (its appliances: living-room); the owner can allow it with 'daiko home device policy --name phone --appliances'", command.Message);
        await AssertAuditedAsync("refused by policy (appliances)");
    }

    [Fact]
    public async Task Modes_AssistSignaturesAreRefusedWhenAssistIsNotAllowed()
    {
        await PolicyAsync(p => p with { Modes = DevicePolicy.ParseModes("resume,relay") });

        var delegated = await Assert.ThrowsAsync<ControlErrorException>(() => DelegateAsync(DelegationMode.Assist));
        var sign = await Assert.ThrowsAsync<ControlErrorException>(() => _control.RequestAsync(new SignRequest(Daiko.Tls.SignatureScheme.EcdsaSecp256r1Sha256, new byte[130]), CancellationToken.None));
        // The chain verdict is part of assist: no validation (nor intermediate fetch) for a device without it.
        var verdict = await Assert.ThrowsAsync<ControlErrorException>(() => _control.RequestAsync(
            new VerifyChainRequest("localhost", [_home.Pki.Server.Certificate.RawData, _home.Pki.Root.RawData]), CancellationToken.None));

        Assert.Equal(ErrorCode.PolicyRefused, delegated.Code);
        Assert.Equal(ErrorCode.PolicyRefused, sign.Code);
        Assert.Equal(ErrorCode.PolicyRefused, verdict.Code);
        await AssertAuditedAsync("refused by policy (modes)");
        Assert.Contains(await _home.Server.Devices.AuditLogAsync(), e => e.Action == "verify-chain" && e.Outcome == "refused by policy (modes)");

        await PolicyAsync(p => p with { Modes = DevicePolicy.ParseModes("assist") });
        Assert.True(Assert.IsType<VerdictReply>(await _control.RequestAsync(
            new VerifyChainRequest("localhost", [_home.Pki.Server.Certificate.RawData, _home.Pki.Root.RawData]), CancellationToken.None)).Trusted);
    }

    [Fact]
    public async Task VerifyChain_ForANameTheMarketListCannotAllow_IsRefusedAndAudited_ANameItAllowsOnSomePortIsJudged()
    {
        Task<ControlMessage> VerifyAsync(string? host) => _control.RequestAsync(
            new VerifyChainRequest(host, [_home.Pki.Server.Certificate.RawData, _home.Pki.Root.RawData]), CancellationToken.None);
        // bücher.example listed in its ASCII form, as a delegation there is judged.
        await PolicyAsync(p => p with { Markets = DevicePolicy.ParseMarkets("shop.example,localhost:9,xn--bcher-kva.example"), Modes = DevicePolicy.ParseModes("assist") });

        var refused = await Assert.ThrowsAsync<ControlErrorException>(() => VerifyAsync("bank.example"));
        var unnamed = await Assert.ThrowsAsync<ControlErrorException>(() => VerifyAsync(null));

        Assert.Equal(ErrorCode.PolicyRefused, refused.Code);
        Assert.Contains("may not use the market bank.example", refused.Message, StringComparison.Ordinal);
        Assert.Contains(await _home.Server.Devices.AuditLogAsync(), e => e.Action == "verify-chain" && e.Market == "bank.example" && e.Outcome == "refused by policy (markets)");
        // A chain with no name to be judged for would be a verdict on any market's chain.
        Assert.Equal(ErrorCode.PolicyRefused, unnamed.Code);
        // A name the list holds for one port only is judged (a verdict carries no port); so is a listed name whose chain
        // is not for it (judged, and untrusted), however the terminal spelled it.
        Assert.True(Assert.IsType<VerdictReply>(await VerifyAsync("localhost")).Trusted);
        Assert.False(Assert.IsType<VerdictReply>(await VerifyAsync("SHOP.example.")).Trusted);
        Assert.False(Assert.IsType<VerdictReply>(await VerifyAsync("bücher.example")).Trusted);
        // An address entry may allow any name by what it resolves to: the name alone is not refused.
        await PolicyAsync(p => p with { Markets = DevicePolicy.ParseMarkets("127.0.0.0/8") });
        Assert.IsType<VerdictReply>(await VerifyAsync("bank.example"));
    }

    [Fact]
    public async Task Assist_JudgesTheServerNameAtItsOwnAddresses_SoAPublicHostCannotCarryAHomeNetworkName()
    {
        // Any public market, no loopback entry: localhost stands for a service inside the home network.
        await PolicyAsync(p => p with { Markets = DevicePolicy.ParseMarkets("*") });

        // The terminal would dial where it likes; naming a public address as the host does not make the name, or an address
        // given as the server name, public.
        foreach (var name in new[] { "localhost", "127.0.0.1" })
        {
            var refused = await Assert.ThrowsAsync<ControlErrorException>(() => _control.RequestAsync(
                new DelegateRequest(new MarketAddress("8.8.8.8", _market.Port, name, null), DelegationMode.Assist), CancellationToken.None));
            Assert.Equal(ErrorCode.PolicyRefused, refused.Code);
            Assert.Contains("private address", refused.Message, StringComparison.Ordinal);
        }
        // No grant was opened: the card signs nothing.
        var sign = await Assert.ThrowsAsync<ControlErrorException>(() => _control.RequestAsync(
            new SignRequest(Daiko.Tls.SignatureScheme.EcdsaSecp256r1Sha256, new byte[130]), CancellationToken.None));
        Assert.Contains("only inside an approved 'delegate assist'", sign.Message, StringComparison.Ordinal);

        // Allowed by the device's list, the name is assisted.
        await PolicyAsync(p => p with { Markets = DevicePolicy.ParseMarkets(LoopbackMarkets.Markets) });
        Assert.IsType<AssistReply>(await _control.RequestAsync(
            new DelegateRequest(new MarketAddress("localhost", _market.Port, null, null), DelegationMode.Assist), CancellationToken.None));
    }
}
