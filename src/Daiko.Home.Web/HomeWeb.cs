using System.Net;
using System.Security.Cryptography.X509Certificates;
using Daiko.Home.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Prometheus;

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
/// <c>/metrics</c> (Prometheus text format, counts only). A non-loopback address needs TLS.
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
        if (options.Certificate is null && !IPAddress.IsLoopback(options.Endpoint.Address))
            throw new ArgumentException($"the console at {options.Endpoint} is reachable from the network: give it TLS (the home identity's certificate, or --console-cert PEM --console-key PEM), or bind it to 127.0.0.1");
        MeterBridge.StartOnce();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = typeof(HomeWeb).Assembly.GetName().Name, ContentRootPath = options.Directory });
        builder.Logging.ClearProviders();
        builder.WebHost.UseShutdownTimeout(TimeSpan.FromSeconds(1));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = 64 * 1024;
            kestrel.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
            kestrel.Listen(options.Endpoint, listen =>
            {
                if (options.Certificate is { } certificate) listen.UseHttps(certificate);
            });
        });
        var sessions = new ConsoleSessions(options.Time, () => TimeSpan.FromMinutes(options.Config().Limits.ConsoleSessionMinutes));
        var app = builder.Build();
        app.Use(SecurityHeaders);
        app.MapGet("/healthz", async Task<IResult> (HttpContext context) => await Health(context, server));
        app.MapMetrics("/metrics");
        ConsoleEndpoints.Map(app, new ConsoleContext(server, options, sessions));
        await app.StartAsync();
        var bound = app.Urls.FirstOrDefault() is { } url ? new Uri(url).Port : options.Endpoint.Port;
        var host = options.Endpoint.Address.Equals(IPAddress.Any) || options.Endpoint.Address.Equals(IPAddress.IPv6Any)
            ? options.PublicHost ?? Dns.GetHostName()
            : options.Endpoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{options.Endpoint.Address}]" : options.Endpoint.Address.ToString();
        var baseUrl = $"{(options.Certificate is null ? "http" : "https")}://{host}:{bound}";
        ConsoleLinks.RecordRunning(options.Directory, baseUrl);
        return new HomeWeb(app, options.Directory, baseUrl);
    }

    /// <summary>Ready (200) when the home store answers a query and the home card's token answers a status read; 503 naming what did not.</summary>
    private static async Task<IResult> Health(HttpContext context, HomeServer server)
    {
        async Task<string> Check(Func<Task> probe)
        {
            try
            {
                await probe();
                return "ok";
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return "failing: " + e.GetType().Name;
            }
        }
        var store = await Check(() => server.Devices.ListAsync());
        var token = await Check(() => Task.FromResult(server.Card.GetStatus()));
        var ready = store == "ok" && token == "ok";
        context.Response.Headers.CacheControl = "no-store";
        return Results.Json(new { status = ready ? "ready" : "unavailable", store, token }, statusCode: ready ? 200 : 503);
    }

    private static Task SecurityHeaders(HttpContext context, Func<Task> next)
    {
        var headers = context.Response.Headers;
        headers.ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        headers["Referrer-Policy"] = "no-referrer";
        headers.CacheControl = "no-store";
        if (context.Request.IsHttps) headers.StrictTransportSecurity = "max-age=31536000";
        return next();
    }

    /// <summary>Stops accepting, lets requests in flight finish (up to a second), and forgets the console's URL.</summary>
    public async ValueTask DisposeAsync()
    {
        ConsoleLinks.RecordRunning(_directory, null);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        await _app.StopAsync(stop.Token);
        await _app.DisposeAsync();
    }
}
