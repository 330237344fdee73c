using System.Net.Sockets;
using Daiko.TestSupport;

namespace Daiko.Web.Tests;

/// <summary>
/// The console listens where <c>--console</c> says and nowhere else: ASP.NET Core's own configuration sources (an
/// appsettings.json in the home directory, Kestrel__ environment variables) add no listener beside it.
/// </summary>
public sealed class ConsoleConfigurationProcessTests
{
    private sealed class ConsoleOnly : HomeWithConsole
    {
        protected override bool EnrollTerminal => false;
    }

    [Fact]
    public async Task AnAppSettingsFileInTheHomeDirectory_AddsNoListener_BesideTheConsole()
    {
        var system = new ConsoleOnly();
        await system.InitializeAsync();
        try
        {
            system.Signal("TERM");
            Assert.Equal(0, await system.Server.WaitForExitAsync(TimeSpan.FromSeconds(10)));
            // Plain HTTP on another address, as a Kestrel endpoint of the configuration would have it (loopback here; on a
            // real machine it could be any address, past the rule that plain HTTP stays on loopback).
            var extra = Loopback.FreePort();
            File.WriteAllText(Path.Combine(system.Home, "appsettings.json"),
                $$"""{ "Kestrel": { "Endpoints": { "Extra": { "Url": "http://127.0.0.1:{{extra}}" } } } }""");

            await system.StartServerAsync();

            using var client = new TcpClient();
            var refused = await Assert.ThrowsAsync<SocketException>(() => client.ConnectAsync("127.0.0.1", extra));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }
        finally
        {
            await system.DisposeAsync();
        }
    }
}
