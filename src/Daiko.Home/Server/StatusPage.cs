using System.Net;
using System.Text;
using Daiko.Cards;
using Daiko.Home.Devices;

namespace Daiko.Home.Server;

/// <summary>
/// F11: a small responsive status page for the home server's owner (card state, devices, recent audit
/// lines), served on the address given with <c>--web</c>. Read-only, no secrets; bind it to loopback
/// or a trusted network.
/// </summary>
public sealed class StatusPage : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly HomeCard _card;
    private readonly DeviceRegistry _devices;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    private StatusPage(IPEndPoint endPoint, HomeCard card, DeviceRegistry devices)
    {
        _card = card;
        _devices = devices;
        _listener.Prefixes.Add($"http://{(endPoint.Address.Equals(IPAddress.Any) ? "+" : endPoint.Address.ToString())}:{endPoint.Port}/");
        _listener.Start();
        _loop = ServeAsync();
    }

    public static StatusPage Start(IPEndPoint endPoint, HomeCard card, DeviceRegistry devices) => new(endPoint, card, devices);

    private async Task ServeAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            try
            {
                var body = Encoding.UTF8.GetBytes(await RenderAsync());
                context.Response.ContentType = "text/html; charset=utf-8";
                context.Response.Headers["Cache-Control"] = "no-store";
                context.Response.Headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'";
                await context.Response.OutputStream.WriteAsync(body);
            }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException)
            {
                // The browser went away mid-answer; the next request gets a fresh page.
            }
            finally
            {
                context.Response.Close();
            }
        }
    }

    internal async Task<string> RenderAsync()
    {
        var status = _card.GetStatus();
        var html = new StringBuilder();
        html.Append("""
            <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Daiko home server</title><style>
            body{font-family:system-ui,sans-serif;margin:1rem;max-width:48rem}table{border-collapse:collapse;width:100%}
            td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;font-size:.9rem}.state{font-size:1.4rem;font-weight:bold}
            @media (max-width:30rem){td:nth-child(3),th:nth-child(3){display:none}}
            </style></head><body><h1>Daiko home server</h1>
            """);
        html.Append($"<p>Home card <span class=\"state\">{WebUtility.HtmlEncode(Handlers.CardGate.StateName(status.State))}</span> — PIN1 tries left {status.Pin1TriesLeft}, PIN2 tries left {status.Pin2TriesLeft}</p>");
        html.Append("<h2>Devices</h2><table><tr><th>name</th><th>state</th><th>enrolled</th></tr>");
        foreach (var d in await _devices.ListAsync())
        {
            html.Append($"<tr><td>{WebUtility.HtmlEncode(d.Name)}</td><td>{(d.Revoked ? "revoked" : "active")}</td><td>{d.EnrolledAt:yyyy-MM-dd HH:mm}</td></tr>");
        }
        html.Append("</table><h2>Recent activity</h2><table><tr><th>time</th><th>action</th><th>market</th><th>outcome</th></tr>");
        foreach (var a in await _devices.AuditLogAsync(30))
        {
            html.Append($"<tr><td>{a.At:MM-dd HH:mm:ss}</td><td>{WebUtility.HtmlEncode(a.Action)} {WebUtility.HtmlEncode(a.Mode ?? "")}</td><td>{WebUtility.HtmlEncode(a.Market ?? "")}</td><td>{WebUtility.HtmlEncode(a.Outcome)}</td></tr>");
        }
        html.Append("</table></body></html>");
        return html.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _loop;
        _listener.Close();
    }
}
