using Daiko.TestSupport;

namespace Daiko.Hostile.Tests.Peers;

/// <summary>
/// <c>daiko home serve --proxy-protocol</c> behind a real HAProxy that sends PROXY protocol v2 headers;
/// headers are believed from HAProxy (127.0.0.1) and from the tests' own peers in 127.0.2.0/24 only.
/// </summary>
public sealed class ProxiedHomeServe : HomeServeProcess
{
    public HaproxyServer Balancer { get; private set; } = null!;

    public const string ProxyFrom = "127.0.0.1,127.0.2.0/24,::1";

    protected override string[] ServeOptions => ["--proxy-protocol", "--proxy-from", ProxyFrom];

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
