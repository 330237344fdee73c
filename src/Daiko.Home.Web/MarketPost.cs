using System.Net.Http.Headers;
using Daiko.Home.Delegation;

namespace Daiko.Home.Web;

/// <summary>
/// A money message posted by the home server itself to a market, over a TLS session in which the home
/// card proves the user's identity (markets bind the purse key to that client certificate). The
/// session is already TLS, so the HTTP client is handed an http URI for the same authority.
/// </summary>
internal static class MarketPost
{
    /// <param name="reach">Which addresses the owner's session may go to (<see cref="Daiko.Home.Policy.DevicePolicies.ReachOfAnyDeviceAsync"/>).</param>
    public static async Task<HttpResponseMessage> SendAsync(DelegationService delegation, Uri target, byte[] cose, Daiko.Home.Policy.MarketReach reach, CancellationToken ct)
    {
        if (target.Scheme != Uri.UriSchemeHttps) throw new HttpRequestException($"a market takes money messages over https only, not {target.Scheme}");
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            ConnectCallback = async (context, token) =>
                await delegation.ConnectAsUserAsync(null, MarketRequest.Canonical(context.DnsEndPoint.Host, context.DnsEndPoint.Port, null, "http/1.1") with { Reach = reach }, null, token),
        };
        // Room for a turn among the home server's handshakes with markets (up to the market timeout, 15 s) and the handshake.
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(40) };
        using var request = new HttpRequestMessage(HttpMethod.Post, new UriBuilder(target) { Scheme = Uri.UriSchemeHttp, Port = target.Port }.Uri)
        {
            Content = new ByteArrayContent(cose),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/cose");
        request.Headers.Host = target.IsDefaultPort ? target.Host : $"{target.Host}:{target.Port}";
        return await http.SendAsync(request, HttpCompletionOption.ResponseContentRead, ct);
    }

}
