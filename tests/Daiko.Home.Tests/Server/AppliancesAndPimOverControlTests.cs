using System.Net;
using Daiko.Cards;
using Daiko.Home.Appliances;
using Daiko.Home.Control;
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
        _home.Server.Appliances.Register(new Appliance("living-room", _thermostat.Endpoint));
        var terminal = Path.Combine(_home.Dir.Path, "terminal");
        await TerminalClient.EnrollAsync(terminal, _home.Endpoint, _home.NewCode("tablet"), HomeFixture.AccessPin, createAccessCard: HomeFixture.TestAccessCard);
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

    private Task UnlockAsync() => _control.RequestAsync(new ControlMessage("unlock").Set("pin1", HomeFixture.Pin1).Set("pin2", HomeFixture.Pin2), CancellationToken.None);

    [Fact]
    public async Task ApplianceCommand_IsRefusedUntilUnlock_ThenReachesTheAppliance()
    {
        var locked = await Assert.ThrowsAsync<ControlErrorException>(() => _control.RequestAsync(new ControlMessage("appliance-list"), CancellationToken.None));
        Assert.Equal("card-not-ready", locked.Code);
        await UnlockAsync();

        var list = await _control.RequestAsync(new ControlMessage("appliance-list"), CancellationToken.None);
        Assert.Equal(["living-room"], list.GetList("names").OfType<string>());
        var reply = await _control.RequestAsync(new ControlMessage("appliance-command").Set("name", "living-room").Set("command", "set-target")
            .Set("arguments", new List<object> { new List<object> { "celsius", "24" } }), CancellationToken.None);
        Assert.Contains("\"target_celsius\":24", reply.GetString("state"), StringComparison.Ordinal);

        var refused = await Assert.ThrowsAsync<ControlErrorException>(() => _control.RequestAsync(new ControlMessage("appliance-command").Set("name", "living-room")
            .Set("command", "self-destruct").Set("arguments", new List<object>()), CancellationToken.None));
        Assert.Equal("appliance-refused", refused.Code);
        var readings = await _control.RequestAsync(new ControlMessage("appliance-readings").Set("name", "living-room"), CancellationToken.None);
        Assert.NotEmpty(readings.GetList("readings"));
    }

    [Fact]
    public async Task PimSync_StoresOnTheHomeServer_AndReportsConflicts()
    {
        await UnlockAsync();
        var first = await _control.RequestAsync(new ControlMessage("pim-sync").Set("since", 0L)
            .Set("changes", new List<object> { new List<object?> { "c1", "contact", 0L, false, "{\"name\":\"Bob\"}" } }), CancellationToken.None);
        Assert.Equal("applied", ((List<object?>)first.GetList("results")[0]!)[1]);

        var stale = await _control.RequestAsync(new ControlMessage("pim-sync").Set("since", 0L)
            .Set("changes", new List<object> { new List<object?> { "c1", "contact", 0L, false, "{\"name\":\"Robert\"}" } }), CancellationToken.None);
        Assert.Equal("conflict", ((List<object?>)stale.GetList("results")[0]!)[1]);
        var change = (List<object?>)Assert.Single(stale.GetList("changes"))!;
        Assert.Contains("Bob", (string)change[4]!, StringComparison.Ordinal);
    }
}
