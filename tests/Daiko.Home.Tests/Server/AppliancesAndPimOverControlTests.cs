using System.Net;
using Daiko.Cards;
using Daiko.Home.Appliances;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Samples.Appliances;
using Daiko.Terminal;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>F16 and F17 from a terminal, over the encrypted control channel, gated by the home card.</summary>
[Collection("home card")]
public sealed class AppliancesAndPimOverControlTests : IAsyncLifetime
{
    private HomeFixture _home = null!;
    private SampleThermostat _thermostat = null!;
    private ControlConnection _control = null!;
    private AccessCard _access = null!;

    public async Task InitializeAsync()
    {
        _home = HomeFixture.Start();
        _thermostat = await SampleThermostat.StartAsync(IPAddress.Loopback);
        await _home.Server.Appliances.RegisterAsync(new Appliance("living-room", _thermostat.Endpoint));
        var terminal = Path.Combine(_home.Dir.Path, "terminal");
        await TerminalClient.EnrollAsync(terminal, _home.Endpoint, await _home.NewCodeAsync("tablet"), HomeFixture.AccessPin, createAccessCard: HomeFixture.TestAccessCard);
        _access = AccessCard.Open(terminal);
        _access.Unlock(HomeFixture.AccessPin);
        _control = await TerminalClient.ConnectAsync(terminal, _access.DeviceKey, CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _control.DisposeAsync();
        _access.Dispose();
        await _thermostat.DisposeAsync();
        await _home.DisposeAsync();
    }

    private HomeControl Home => new(_control);

    private Task UnlockAsync() => Home.UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, CancellationToken.None);

    [Fact]
    public async Task ApplianceCommand_IsRefusedUntilUnlock_ThenReachesTheAppliance()
    {
        var locked = await Assert.ThrowsAsync<ControlErrorException>(() => Home.AppliancesAsync(CancellationToken.None));
        Assert.Equal(ErrorCode.CardNotReady, locked.Code);
        await UnlockAsync();

        Assert.Equal(["living-room"], await Home.AppliancesAsync(CancellationToken.None));
        var state = await Home.ApplianceCommandAsync("living-room", "set-target", [KeyValuePair.Create("celsius", "24")], CancellationToken.None);
        Assert.Contains("\"target_celsius\":24", state, StringComparison.Ordinal);

        var refused = await Assert.ThrowsAsync<ControlErrorException>(() => Home.ApplianceCommandAsync("living-room", "self-destruct", [], CancellationToken.None));
        Assert.Equal(ErrorCode.ApplianceRefused, refused.Code);
        Assert.NotEmpty(await Home.ApplianceReadingsAsync("living-room", 20, CancellationToken.None));
    }

    [Fact]
    public async Task PimSync_StoresOnTheHomeServer_AndReportsConflicts()
    {
        await UnlockAsync();
        var first = await Home.PimSyncAsync(0, [new PimEntryChange("c1", PimEntryKind.Contact, 0, false, "{\"name\":\"Bob\"}")], CancellationToken.None);
        Assert.Equal(PimEntryOutcome.Applied, first.Results[0].Outcome);

        var stale = await Home.PimSyncAsync(0, [new PimEntryChange("c1", PimEntryKind.Contact, 0, false, "{\"name\":\"Robert\"}")], CancellationToken.None);
        Assert.Equal(PimEntryOutcome.Conflict, stale.Results[0].Outcome);
        var change = Assert.Single(stale.Changes);
        Assert.Contains("Bob", change.Body, StringComparison.Ordinal);
    }
}
