namespace Daiko.Terminal.Http;

/// <summary>
/// Makes <see cref="HttpClient"/> speak HTTP over sessions Daiko opens: for an https URL the stream
/// comes from <c>openSession(host, port)</c> — already authenticated TLS, from a delegated session or
/// Daiko's own engine — and the platform's HTTP/1.1 implementation runs on top of it unchanged
/// (chunked bodies, keep-alive, headers). The platform's own TLS is never involved.
/// </summary>
public sealed class SessionHttpHandler : DelegatingHandler
{
    public SessionHttpHandler(Func<string, int, CancellationToken, ValueTask<Stream>> openSession)
        : base(CreateInner(openSession))
    {
    }

    private static SocketsHttpHandler CreateInner(Func<string, int, CancellationToken, ValueTask<Stream>> openSession) => new()
    {
        // Sessions are cheap to reuse but each delegated session is bound to one market endpoint; the
        // pool keys on host and port, which is exactly that.
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
        UseProxy = false,
        AllowAutoRedirect = false,
        ConnectCallback = async (context, cancellationToken) =>
            await openSession(context.DnsEndPoint.Host, context.DnsEndPoint.Port, cancellationToken),
    };

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var uri = request.RequestUri ?? throw new InvalidOperationException("the request has no URI");
        if (uri.Scheme != Uri.UriSchemeHttps)
        {
            throw new NotSupportedException($"only https URLs go through Daiko sessions, not {uri.Scheme}");
        }
        // The session is already TLS: hand the platform an http URI for the same authority so that it
        // does not wrap the stream in TLS a second time. The Host header keeps the original authority.
        var builder = new UriBuilder(uri) { Scheme = Uri.UriSchemeHttp, Port = uri.Port };
        request.RequestUri = builder.Uri;
        request.Headers.Host ??= uri.IsDefaultPort ? uri.Host : $"{uri.Host}:{uri.Port}";
        try
        {
            return await base.SendAsync(request, cancellationToken);
        }
        finally
        {
            request.RequestUri = uri;
        }
    }
}
