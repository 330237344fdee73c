using Daiko.TestSupport;

namespace Daiko.Hostile.Tests.Peers;

/// <summary><c>daiko home serve --proxy-protocol</c> behind a real HAProxy that sends PROXY protocol v2 headers.</summary>
public sealed class ProxiedHomeServe : HomeServeProcess
{
    public HaproxyServer Balancer { get; private set; } = null!;

    protected override string[] ServeOptions => ["--proxy-protocol"];

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        Balancer = await HaproxyServer.StartAsync(Port);
    }

    public override Task DisposeAsync()
    {
        Balancer?.Dispose();
        return base.DisposeAsync();
    }
}
