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
    public async Task AnApplianceRedirecting_ToAnotherServiceOfTheHomeNetwork_IsRefused_AndThatServiceIsNotAsked()
    {
        await using var inner = await RawHttp.StartAsync(_ => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{\"secret\":\"router\"}"u8.ToArray());
        await using var hostile = await RawHttp.StartAsync(_ => System.Text.Encoding.ASCII.GetBytes($"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{inner.Port}/state\r\nContent-Length: 0\r\n\r\n"));
        await _gateway.RegisterAsync(new Appliance("hostile", new Uri($"http://127.0.0.1:{hostile.Port}/")));

        var result = await _gateway.GetStateAsync("hostile", CancellationToken.None);

        Assert.Equal(ApplianceOutcome.Refused, result.Outcome);
        Assert.Contains("302", result.Reason, StringComparison.Ordinal);
        Assert.Equal(1, hostile.Requests);
        Assert.Equal(0, inner.Requests);
    }

    [Fact]
    public async Task AnApplianceAnsweringWithoutEnd_IsCutAtItsLimit_NotReadWhole()
    {
        var huge = new byte[4 * 1024 * 1024];
        Array.Fill(huge, (byte)' ');
        await using var hostile = await RawHttp.StartAsync(_ => [.. System.Text.Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {huge.Length}\r\n\r\n"), .. huge]);
        await _gateway.RegisterAsync(new Appliance("chatty", new Uri($"http://127.0.0.1:{hostile.Port}/")));

        var result = await _gateway.GetStateAsync("chatty", CancellationToken.None);

        Assert.Equal(ApplianceOutcome.Refused, result.Outcome);
        Assert.Contains($"answered more than {ApplianceGateway.MaxAnswerBytes / 1024} KiB", result.Reason, StringComparison.Ordinal);
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

/// <summary>A loopback HTTP peer that answers every request with fixed bytes and closes: a hostile appliance, or a service behind one.</summary>
internal sealed class RawHttp : IAsyncDisposable
{
    private readonly System.Net.Sockets.TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private Task _serving = Task.CompletedTask;
    private int _requests;

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Requests => Volatile.Read(ref _requests);

    public static Task<RawHttp> StartAsync(Func<int, byte[]> answer)
    {
        var peer = new RawHttp();
        peer._listener.Start();
        peer._serving = peer.ServeAsync(answer);
        return Task.FromResult(peer);
    }

    private async Task ServeAsync(Func<int, byte[]> answer)
    {
        try
        {
            while (true)
            {
                using var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                var stream = client.GetStream();
                var buffer = new byte[4096];
                var seen = 0;
                // The request's head, up to its blank line.
                while (seen < buffer.Length && buffer.AsSpan(0, seen).IndexOf("\r\n\r\n"u8) < 0 && await stream.ReadAsync(buffer.AsMemory(seen), _stop.Token) is var n and > 0) seen += n;
                var count = Interlocked.Increment(ref _requests);
                try
                {
                    await stream.WriteAsync(answer(count), _stop.Token);
                }
                catch (IOException)
                {
                    // The client stopped reading: what a limit on its side does.
                }
            }
        }
        catch (Exception e) when (_stop.IsCancellationRequested && e is OperationCanceledException or System.Net.Sockets.SocketException
            or ObjectDisposedException or InvalidOperationException)
        {
            // Stopped: an accept cancelled, or begun on the listener just stopped ("not listening").
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _serving;
        _stop.Dispose();
    }
}
