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
    /// <summary>
    /// The most of a market's answer read (a signed confirmation is a few hundred bytes): a hostile payee names its own
    /// address for cancellations, and an answer held whole would be held in the process that holds the card and the purse.
    /// </summary>
    public const int MaxAnswer = 64 * 1024;

    /// <summary>What a market answered: whether with success, and the body (at most <see cref="MaxAnswer"/> bytes).</summary>
    public sealed record Answer(bool Success, int Status, byte[] Body)
    {
        /// <summary>The body as text to show the owner: its first 200 characters, on one line.</summary>
        public string Shown
        {
            get
            {
                var text = System.Text.Encoding.UTF8.GetString(Body).Trim().ReplaceLineEndings(" ");
                return text.Length <= 200 ? text : text[..200] + " …";
            }
        }
    }

    /// <param name="reach">Which addresses the owner's session may go to (<see cref="Daiko.Home.Policy.DevicePolicies.ReachOfAnyDeviceAsync"/>).</param>
    /// <exception cref="HttpRequestException">the market could not be reached, or its answer is longer than <see cref="MaxAnswer"/></exception>
    public static async Task<Answer> SendAsync(DelegationService delegation, Uri target, byte[] cose, Daiko.Home.Policy.MarketReach reach, CancellationToken ct)
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
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        if (response.Content.Headers.ContentLength > MaxAnswer) throw TooLong();
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        var read = new byte[MaxAnswer + 1];
        var length = 0;
        while (length < read.Length && await body.ReadAsync(read.AsMemory(length), ct) is var n and > 0) length += n;
        if (length > MaxAnswer) throw TooLong();
        return new Answer(response.IsSuccessStatusCode, (int)response.StatusCode, read[..length]);
    }

    private static HttpRequestException TooLong() => new($"the market's answer is longer than {MaxAnswer / 1024} KiB (a confirmation is a few hundred bytes): it was not read further");

}
