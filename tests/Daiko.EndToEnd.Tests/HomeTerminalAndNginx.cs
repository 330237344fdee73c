using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// The base of process tests that need their own system each test: a real <c>daiko home serve</c>
/// with an enrolled, unlocked terminal (<see cref="HomeAndTerminal"/>) and an nginx market.
/// </summary>
public abstract class HomeTerminalAndNginx : IAsyncLifetime
{
    protected HomeAndTerminal Parts { get; } = new();

    protected NginxServer Market { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Parts.InitializeAsync();
        Market = await NginxServer.StartAsync(Parts.Pki, Parts.Dir.Path);
    }

    public async Task DisposeAsync()
    {
        Market?.Dispose();
        await Parts.DisposeAsync();
    }
}
