using System.Text;

namespace Daiko.Terminal.Http;

/// <summary>The one HTTP/1.1 request <c>terminal get</c> sends (and the benchmark sends through OpenSSL's client, like for like).</summary>
public static class HttpGet
{
    /// <summary><c>GET</c> of the URL's path and query, with Host (the URL's authority), Connection: close and the User-Agent daiko.</summary>
    public static byte[] Request(Uri url) =>
        Encoding.ASCII.GetBytes($"GET {url.PathAndQuery} HTTP/1.1\r\nHost: {url.Authority}\r\nConnection: close\r\nUser-Agent: daiko\r\n\r\n");
}
