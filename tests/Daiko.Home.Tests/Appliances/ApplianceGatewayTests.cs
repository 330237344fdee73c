using System.Net;
using Daiko.Home.Appliances;
using Daiko.Samples.Appliances;
using Xunit;

namespace Daiko.Home.Tests.Appliances;

public sealed class ApplianceGatewayTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("daiko-appl-").FullName;
    private SampleThermostat _thermostat = null!;
    private ApplianceGateway _gateway = null!;

    public async Task InitializeAsync()
    {
        _thermostat = await SampleThermostat.StartAsync(IPAddress.Loopback);
        _gateway = new ApplianceGateway(Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(_dir, "home.db")).Appliances);
        await _gateway.RegisterAsync(new Appliance("living-room", _thermostat.Endpoint));
    }

    public async Task DisposeAsync()
    {
        _gateway.Dispose();
        await _thermostat.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Command_ReachesTheApplianceAndReturnsItsNewState()
    {
        var result = await _gateway.SendCommandAsync("living-room", "set-target", new Dictionary<string, string> { ["celsius"] = "23.5" }, CancellationToken.None);

        Assert.Equal(ApplianceOutcome.Done, result.Outcome);
        Assert.Contains("\"target_celsius\":23.5", result.State, StringComparison.Ordinal);
        var state = await _gateway.GetStateAsync("living-room", CancellationToken.None);
        Assert.Contains("\"target_celsius\":23.5", state.State, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Command_TheApplianceRefuses_IsReportedWithItsReason()
    {
        var result = await _gateway.SendCommandAsync("living-room", "set-target", new Dictionary<string, string> { ["celsius"] = "99" }, CancellationToken.None);

        Assert.Equal(ApplianceOutcome.Refused, result.Outcome);
        Assert.Contains("between 5 and 30", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownAppliance_IsAClearResult()
    {
        var result = await _gateway.GetStateAsync("garage", CancellationToken.None);
        Assert.Equal(ApplianceOutcome.UnknownAppliance, result.Outcome);
        Assert.Contains("garage", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnreachableAppliance_IsAClearResult()
    {
        var port = Daiko.Home.Tests.Appliances.ClosedPort.Get();
        await _gateway.RegisterAsync(new Appliance("unplugged", new Uri($"http://127.0.0.1:{port}/")));
        var result = await _gateway.GetStateAsync("unplugged", CancellationToken.None);
        Assert.Equal(ApplianceOutcome.Unreachable, result.Outcome);
    }

    [Fact]
    public async Task Collect_StoresAReadingPerAppliance()
    {
        Assert.Equal(1, await _gateway.CollectAsync(CancellationToken.None));
        Assert.Equal(1, await _gateway.CollectAsync(CancellationToken.None));

        var readings = await _gateway.ReadingsAsync("living-room");
        Assert.Equal(2, readings.Count);
        Assert.All(readings, r => Assert.Contains("current_celsius", r.State, StringComparison.Ordinal));
    }
}

internal static class ClosedPort
{
    public static int Get()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
