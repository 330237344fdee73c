using System.Net;
using System.Security.Cryptography.X509Certificates;
using Daiko.Home.Hosting;
using Microsoft.AspNetCore.Builder;

namespace Daiko.Home.Web;

/// <summary>How the owner's console listens.</summary>
public sealed record HomeWebOptions(string Directory, IPEndPoint Endpoint)
{
    /// <summary>The TLS certificate (with its key); null serves plain HTTP, allowed on loopback only.</summary>
    public X509Certificate2? Certificate { get; init; }

    /// <summary>The live home.json (re-read on SIGHUP by the caller).</summary>
    public Func<HomeConfig> Config { get; init; } = () => new HomeConfig();

    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>The console's host name in links when it listens on every address.</summary>
    public string? PublicHost { get; init; }
}

/// <summary>
/// The home server's web side on Kestrel: the owner's console (server-rendered pages, login by a
/// one-time link, see <see cref="ConsoleEndpoints"/>) and, without login, <c>/healthz</c> and
/// <c>/metrics</c> (Prometheus text format, counts only), set up by <see cref="WebSide"/>. A non-loopback address needs TLS.
/// </summary>
public sealed class HomeWeb : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string _directory;

    private HomeWeb(WebApplication app, string directory, string baseUrl)
    {
        _app = app;
        _directory = directory;
        BaseUrl = baseUrl;
    }

    /// <summary>The console's base URL (https:// under TLS).</summary>
    public string BaseUrl { get; }

    public static async Task<HomeWeb> StartAsync(HomeWebOptions options, HomeServer server)
    {
        var listen = new WebListen(options.Directory, options.Endpoint, options.Certificate, "the home identity's certificate, or --console-cert PEM --console-key PEM")
        {
            PublicHost = options.PublicHost,
        };
        // Ready when the home store answers a query and the home card's token answers a status read.
        var app = WebSide.Build(listen,
        [
            new HealthProbe("store", ct => server.Devices.ListAsync(ct)),
            new HealthProbe("token", _ => Task.FromResult(server.Card.GetStatus())),
        ]);
        var sessions = new ConsoleSessions(options.Time, () => TimeSpan.FromMinutes(options.Config().Limits.ConsoleSessionMinutes));
        ConsoleEndpoints.Map(app, new ConsoleContext(server, options, sessions));
        var baseUrl = await WebSide.StartAsync(app, listen);
        ConsoleLinks.RecordRunning(options.Directory, baseUrl, options.Certificate);
        return new HomeWeb(app, options.Directory, baseUrl);
    }

    /// <summary>Stops accepting, lets requests in flight finish (up to a second), and forgets the console's URL.</summary>
    public async ValueTask DisposeAsync()
    {
        ConsoleLinks.RecordRunning(_directory, null);
        await WebSide.StopAsync(_app);
    }
}
