using System.Net;
using System.Net.Sockets;
using System.Text;
using Daiko.Terminal.Http;
using Xunit;

namespace Daiko.Terminal.Tests;

public sealed class SessionHttpHandlerTests
{
    [Fact]
    public async Task HttpsRequest_RunsOverTheProvidedSession_WithTheOriginalHost()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var server = new TcpListener(IPAddress.Loopback, 0);
        server.Start();
        string? requestHead = null;
        var serve = Task.Run(async () =>
        {
            using var c = await server.AcceptTcpClientAsync(cts.Token);
            var stream = c.GetStream();
            var buffer = new byte[4096];
            var head = new StringBuilder();
            while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var n = await stream.ReadAsync(buffer, cts.Token);
                if (n == 0) break;
                head.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }
            requestHead = head.ToString();
            await stream.WriteAsync("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"u8.ToArray(), cts.Token);
        });
        var opened = new List<(string, int)>();
        using var http = new HttpClient(new SessionHttpHandler(async (host, port, ct) =>
        {
            opened.Add((host, port));
            var tcp = new TcpClient();
            await tcp.ConnectAsync((IPEndPoint)server.LocalEndpoint, ct);
            return tcp.GetStream();
        }));

        var body = await http.GetStringAsync(new Uri("https://market.test:8443/orders/7"), cts.Token);

        Assert.Equal("hello", body);
        Assert.Equal([("market.test", 8443)], opened);
        await serve;
        Assert.StartsWith("GET /orders/7 HTTP/1.1\r\n", requestHead, StringComparison.Ordinal);
        Assert.Contains("Host: market.test:8443\r\n", requestHead, StringComparison.Ordinal);
        server.Stop();
    }

    [Fact]
    public async Task PlainHttp_IsRefused()
    {
        using var http = new HttpClient(new SessionHttpHandler((_, _, _) => throw new InvalidOperationException("must not connect")));
        await Assert.ThrowsAsync<NotSupportedException>(() => http.GetAsync(new Uri("http://market.test/")));
    }
}
