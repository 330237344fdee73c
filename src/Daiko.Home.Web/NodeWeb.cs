using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Daiko.Home.Web;

/// <summary>
/// A hosted node's web side (<c>host serve --console</c>), on the same Kestrel set-up as the home's
/// (<see cref="WebSide"/>): <c>/healthz</c> from the node's probes and <c>/metrics</c>, without login.
/// Every other path is 404 with one line: the owner's console is not built for hosted nodes yet.
/// </summary>
public sealed class NodeWeb : IAsyncDisposable
{
    /// <summary>The page every other path answers.</summary>
    public const string NoConsole = "This is a hosted Daiko node: it serves /healthz and /metrics here; the owner's console is served by 'daiko home serve' only, for now.";

    private readonly WebApplication _app;

    private NodeWeb(WebApplication app, string baseUrl)
    {
        _app = app;
        BaseUrl = baseUrl;
    }

    /// <summary>The base URL (https:// under TLS).</summary>
    public string BaseUrl { get; }

    public static async Task<NodeWeb> StartAsync(WebListen listen, IReadOnlyList<HealthProbe> probes)
    {
        var app = WebSide.Build(listen, probes);
        app.MapFallback("{**path}", () => Results.Text(NoConsole + "\n", "text/plain; charset=utf-8", statusCode: StatusCodes.Status404NotFound));
        return new NodeWeb(app, await WebSide.StartAsync(app, listen));
    }

    /// <summary>Stops accepting and lets requests in flight finish (up to a second).</summary>
    public async ValueTask DisposeAsync() => await WebSide.StopAsync(_app);
}
