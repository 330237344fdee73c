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
            {
                var connection = await delegation.ConnectAsUserAsync(null, MarketRequest.Canonical(context.DnsEndPoint.Host, context.DnsEndPoint.Port, null, "http/1.1") with { Reach = reach }, null, token);
                // One request and done: its tickets (a TLS 1.2 one holds the session's master secret) are nobody's.
                connection.ForgoTickets();
                return connection;
            },
        };
        // Room for a turn among the home server's handshakes with markets (up to the market timeout, 15 s) and the handshake;
        // the deadline covers the answer's body too (the client's own timeout ends at its headers when they are read first).
        using var http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(AnswerTime);
        using var request = new HttpRequestMessage(HttpMethod.Post, new UriBuilder(target) { Scheme = Uri.UriSchemeHttp, Port = target.Port }.Uri)
        {
            Content = new ByteArrayContent(cose),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/cose");
        request.Headers.Host = target.IsDefaultPort ? target.Host : $"{target.Host}:{target.Port}";
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
            if (response.Content.Headers.ContentLength > MaxAnswer) throw TooLong();
            await using var body = await response.Content.ReadAsStreamAsync(deadline.Token);
            var read = new byte[MaxAnswer + 1];
            var length = 0;
            while (length < read.Length && await body.ReadAsync(read.AsMemory(length), deadline.Token) is var n and > 0) length += n;
            if (length > MaxAnswer) throw TooLong();
            return new Answer(response.IsSuccessStatusCode, (int)response.StatusCode, read[..length]);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            throw new HttpRequestException($"the market did not answer within {AnswerTime.TotalSeconds:0} s");
        }
        catch (Exception e) when (e is IOException or Daiko.Tls.TlsException)
        {
            // The body broke off (a reset, a TLS alert): a failed request, as one that broke off before its headers is.
            throw new HttpRequestException($"the market's answer broke off: {e.Message}", e);
        }
    }

    /// <summary>How long the market has for its whole answer, its turn and handshake included.</summary>
    public static readonly TimeSpan AnswerTime = TimeSpan.FromSeconds(40);

    private static HttpRequestException TooLong() => new($"the market's answer is longer than {MaxAnswer / 1024} KiB (a confirmation is a few hundred bytes): it was not read further");

}
