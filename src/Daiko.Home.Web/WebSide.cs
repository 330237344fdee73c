using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace Daiko.Home.Web;

/// <summary>One named check of <c>/healthz</c>: "ok" when it completes, else "failing: " and what went wrong.</summary>
public sealed record HealthProbe(string Name, Func<CancellationToken, Task> Check);

/// <summary>Where a web side listens: one address, with TLS or (on loopback only) without.</summary>
/// <param name="ContentRoot">An existing directory (the home's or the site's).</param>
/// <param name="TlsHint">Where TLS comes from, named in the refusal of plain HTTP beyond loopback.</param>
public sealed record WebListen(string ContentRoot, IPEndPoint Endpoint, X509Certificate2? Certificate, string TlsHint)
{
    /// <summary>The host name in the base URL when it listens on every address.</summary>
    public string? PublicHost { get; init; }
}

/// <summary>
/// What the web sides of <c>home serve</c> (<see cref="HomeWeb"/>) and <c>host serve</c>
/// (<see cref="NodeWeb"/>) share: Kestrel on one address (plain HTTP on loopback only), the security
/// headers, <c>/healthz</c> from named probes and <c>/metrics</c> (the Daiko.Home meters, Prometheus text).
/// </summary>
public static class WebSide
{
    /// <summary>How long <c>/healthz</c> waits for each probe.</summary>
    public static readonly TimeSpan ProbeTime = TimeSpan.FromSeconds(5);

    /// <summary>The refusal of plain HTTP on an address beyond loopback, as one sentence.</summary>
    public static string PlainHttpRefused(string where, string tlsHint) =>
        $"the console at {where} is reachable from the network: give it TLS ({tlsHint}), or bind it to 127.0.0.1";

    /// <summary>Kestrel on <paramref name="listen"/> with the security headers, <c>/healthz</c> and <c>/metrics</c> mapped; the caller maps the rest and starts it.</summary>
    internal static WebApplication Build(WebListen listen, IReadOnlyList<HealthProbe> probes)
    {
        if (listen.Certificate is null && !IPAddress.IsLoopback(listen.Endpoint.Address))
            throw new ArgumentException(PlainHttpRefused(listen.Endpoint.ToString(), listen.TlsHint));
        MeterBridge.StartOnce();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = typeof(WebSide).Assembly.GetName().Name, ContentRootPath = listen.ContentRoot });
        // What the command line said, and nothing else: ASP.NET Core's own sources (appsettings.json in the home directory,
        // Kestrel__ and ASPNETCORE_ environment variables) could add listeners past the rule that plain HTTP stays on loopback.
        builder.Configuration.Sources.Clear();
        // (A source of its own for what the code sets below, such as the shutdown timeout.)
        builder.Configuration.AddInMemoryCollection();
        builder.Logging.ClearProviders();
        builder.WebHost.UseShutdownTimeout(TimeSpan.FromSeconds(1));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = 64 * 1024;
            kestrel.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
            kestrel.Listen(listen.Endpoint, endpoint =>
            {
                if (listen.Certificate is { } certificate) endpoint.UseHttps(certificate);
            });
        });
        var app = builder.Build();
        app.Use(SecurityHeaders);
        if (listen.Certificate is null) app.Use(LoopbackNamesOnly);
        var health = new HealthAnswers(probes);
        app.MapGet("/healthz", async Task<IResult> (HttpContext context) => await HealthAsync(context, health));
        app.MapMetrics("/metrics");
        return app;
    }

    /// <summary>Starts <paramref name="app"/>; returns its base URL (https:// under TLS, the port it got when asked for 0).</summary>
    internal static async Task<string> StartAsync(WebApplication app, WebListen listen)
    {
        await app.StartAsync();
        var endpoint = listen.Endpoint;
        var bound = app.Urls.FirstOrDefault() is { } url ? new Uri(url).Port : endpoint.Port;
        var host = endpoint.Address.Equals(IPAddress.Any) || endpoint.Address.Equals(IPAddress.IPv6Any)
            ? listen.PublicHost ?? Dns.GetHostName()
            : endpoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{endpoint.Address}]" : endpoint.Address.ToString();
        return $"{(listen.Certificate is null ? "http" : "https")}://{host}:{bound}";
    }

    /// <summary>Stops accepting and lets requests in flight finish (up to a second).</summary>
    internal static async Task StopAsync(WebApplication app)
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        await app.StopAsync(stop.Token);
        await app.DisposeAsync();
    }

    /// <summary>Ready (200) when every probe answers within <see cref="ProbeTime"/>; else 503, each probe named with "ok" or why not.</summary>
    private static async Task<IResult> HealthAsync(HttpContext context, HealthAnswers health)
    {
        var (ready, body) = await health.CurrentAsync().WaitAsync(context.RequestAborted);
        context.Response.Headers.CacheControl = "no-store";
        return Results.Json(body, statusCode: ready ? 200 : 503);
    }

    /// <summary>
    /// The probes, run once at a time: /healthz needs no login, so requests that arrive while a run is
    /// under way share its answer, and a flood of them reaches the store's pool and the token as one
    /// caller. A request after a run ended starts a fresh one (an outage shows at once).
    /// </summary>
    private sealed class HealthAnswers(IReadOnlyList<HealthProbe> probes)
    {
        private readonly Lock _gate = new();
        private Task<(bool Ready, Dictionary<string, string> Body)>? _answer;

        public Task<(bool Ready, Dictionary<string, string> Body)> CurrentAsync()
        {
            lock (_gate)
            {
                if (_answer is null || _answer.IsCompleted) _answer = RunAsync();
                return _answer;
            }
        }

        private async Task<(bool Ready, Dictionary<string, string> Body)> RunAsync()
        {
            var outcomes = await Task.WhenAll(probes.Select(CheckAsync));
            var ready = outcomes.All(o => o == "ok");
            var body = new Dictionary<string, string> { ["status"] = ready ? "ready" : "unavailable" };
            for (var i = 0; i < probes.Count; i++) body[probes[i].Name] = outcomes[i];
            return (ready, body);
        }
    }

    private static async Task<string> CheckAsync(HealthProbe probe)
    {
        using var limit = new CancellationTokenSource(ProbeTime);
        try
        {
            // On the pool: a probe that blocks (a token call) must not hold the answer past the limit.
            await Task.Run(() => probe.Check(limit.Token), CancellationToken.None).WaitAsync(limit.Token);
            return "ok";
        }
        catch (OperationCanceledException) when (limit.IsCancellationRequested)
        {
            return $"failing: no answer within {ProbeTime.TotalSeconds:0} s";
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return "failing: " + e.GetType().Name;
        }
    }

    /// <summary>
    /// Plain HTTP (loopback only) answers only requests addressed to a loopback name: a web page whose own name an attacker
    /// points at 127.0.0.1 (DNS rebinding) would otherwise read <c>/metrics</c> and <c>/healthz</c>, which need no login,
    /// as its own origin. Under TLS the certificate's name stops such a page. A request with no Host at all (HTTP/1.0, a
    /// health checker's) comes from no web page and is answered.
    /// </summary>
    private static Task LoopbackNamesOnly(HttpContext context, Func<Task> next)
    {
        if (!context.Request.Host.HasValue || IsLoopbackName(context.Request.Host.Host)) return next();
        context.Response.StatusCode = StatusCodes.Status421MisdirectedRequest;
        return context.Response.WriteAsync("this console answers only requests addressed to 127.0.0.1, [::1] or localhost\n");
    }

    internal static bool IsLoopbackName(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
        || (IPAddress.TryParse(host.StartsWith('[') && host.EndsWith(']') ? host[1..^1] : host, out var address) && IPAddress.IsLoopback(address));

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
}
