using System.Diagnostics;
using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Daiko.Bench.Reporting;
using Daiko.Cards;
using Daiko.Protocol;
using Daiko.TestSupport;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Daiko.Tls;

namespace Daiko.Bench.TerminalCost;

/// <summary>
/// The data path after the handshake, against one nginx in one run: bulk record-layer throughput of a
/// resumed Daiko.Tls connection next to SslStream (same suite, same server), and the latency each
/// keep-alive request gains when it goes through the home server (relay, handoff) instead of straight
/// to the market.
/// </summary>
public static class DataPathBenchmark
{
    private const CipherSuite Suite = CipherSuite.Aes128GcmSha256;

    public static async Task<IReadOnlyList<string>> RunAsync(bool quick)
    {
        using var dir = new TempDirectory("daiko-bench-data");
        var pki = TestPki.Create(Path.Combine(dir.Path, "pki"));
        using var nginx = await NginxServer.StartAsync(pki, dir.Path);
        return [await ThroughputAsync(pki, nginx, quick), await LatencyAsync(pki, nginx, dir.Path, quick)];
    }

    private static async Task<string> ThroughputAsync(TestPki pki, NginxServer nginx, bool quick)
    {
        var size = (quick ? 8 : 64) << 20;
        var reps = quick ? 2 : 7;
        await File.WriteAllBytesAsync(Path.Combine(nginx.StaticDirectory, "bulk.bin"), RandomNumberGenerator.GetBytes(size));
        var credential = SoftwareSigner.LoadCredential(pki.User.CertificatePath, pki.User.KeyPath);
        var options = new TlsClientOptions
        {
            ServerName = "localhost",
            CipherSuites = [Suite],
            ClientCredential = credential,
            CertificateValidator = new X509ChainValidator([pki.Root]),
        };
        SessionTicket ticket;
        await using (var first = await TlsClient.ConnectAsync("127.0.0.1", nginx.Port, options, CancellationToken.None))
        {
            await DownloadAsync(first, "/", 0);
            ticket = first.Tickets.FirstOrDefault() ?? throw new InvalidOperationException("nginx sent no session ticket");
        }

        async Task<Stream> Daiko()
        {
            var tls = await TlsClient.ConnectAsync("127.0.0.1", nginx.Port, options with { ResumptionTicket = ticket }, CancellationToken.None);
            if (!tls.Resumed) throw new InvalidOperationException("the benchmark connection did not resume");
            ticket = tls.Tickets.FirstOrDefault() ?? ticket;
            return tls;
        }

        async Task<Stream> Ssl() => await SslStreamPeer.ConnectAsync(pki, nginx.Port, aes128Only: true);

        var rates = new Dictionary<string, List<double>>();
        void Add(string key, double value) => (rates.TryGetValue(key, out var list) ? list : rates[key] = []).Add(value);
        for (var i = 0; i <= reps; i++)
        {
            // Interleaved so that both peers see the same machine state; round 0 warms up and is dropped.
            foreach (var (name, open) in new (string, Func<Task<Stream>>)[] { ("daiko", Daiko), ("sslstream", Ssl) })
            {
                await using (var s = await open())
                {
                    var down = await DownloadAsync(s, "/static/bulk.bin", size);
                    if (i > 0) Add(name + "-down", down);
                }
                await using (var s = await open())
                {
                    var up = await UploadAsync(s, size);
                    if (i > 0) Add(name + "-up", up);
                }
            }
        }
        var d = rates.ToDictionary(kv => kv.Key, kv => Distribution.Of(kv.Value));
        return string.Create(CultureInfo.InvariantCulture,
            $"record layer, {size >> 20} MiB over one connection to nginx, TLS_AES_128_GCM_SHA256, median of {reps}: " +
            $"download resumed Daiko.Tls {d["daiko-down"].Median:0} MB/s, SslStream {d["sslstream-down"].Median:0} MB/s, ratio {d["daiko-down"].Median / d["sslstream-down"].Median:0.00}; " +
            $"upload resumed Daiko.Tls {d["daiko-up"].Median:0} MB/s, SslStream {d["sslstream-up"].Median:0} MB/s, ratio {d["daiko-up"].Median / d["sslstream-up"].Median:0.00}");
    }

    /// <summary>GETs a path over a fresh connection and returns MB/s of everything received.</summary>
    private static async Task<double> DownloadAsync(Stream stream, string path, int expectedBody)
    {
        var clock = Stopwatch.StartNew();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
        var buffer = new byte[64 * 1024];
        long total = 0;
        int n;
        while ((n = await stream.ReadAsync(buffer)) > 0) total += n;
        if (total < expectedBody) throw new InvalidOperationException($"download of {path} stopped after {total} bytes");
        return total / clock.Elapsed.TotalSeconds / 1e6;
    }

    /// <summary>POSTs a body of the given size and returns MB/s until nginx's answer has been read.</summary>
    private static async Task<double> UploadAsync(Stream stream, int size)
    {
        var chunk = new byte[64 * 1024];
        RandomNumberGenerator.Fill(chunk);
        var clock = Stopwatch.StartNew();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"));
        for (var sent = 0; sent < size; sent += chunk.Length) await stream.WriteAsync(chunk.AsMemory(0, Math.Min(chunk.Length, size - sent)));
        var answer = new MemoryStream();
        await stream.CopyToAsync(answer);
        var seconds = clock.Elapsed.TotalSeconds;
        if (!Encoding.ASCII.GetString(answer.ToArray()).StartsWith("HTTP/1.1 200", StringComparison.Ordinal)) throw new InvalidOperationException("nginx refused the upload");
        return size / seconds / 1e6;
    }

    private static async Task<string> LatencyAsync(TestPki pki, NginxServer nginx, string work, bool quick)
    {
        var requests = quick ? 100 : 900; // nginx closes a keep-alive connection after 1000 requests
        var home = Path.Combine(work, "home");
        var terminalDir = Path.Combine(work, "terminal");
        await TerminalCostBenchmark.SetUpHomeAsync(pki, home, work);
        var homePort = Loopback.FreePort();
        using var server = DaikoCli.Start(["home", "serve", "--home", home, "--listen", $"127.0.0.1:{homePort}"]);
        await server.WaitForOutputAsync("home server listening", TimeSpan.FromSeconds(30));
        var code = (await DaikoCli.RunAsync(LoopbackMarkets.DeviceAdd(home, "bench"))).StandardOutput.Trim();
        await TerminalClient.EnrollAsync(terminalDir, $"127.0.0.1:{homePort}", code, "432100", createAccessCard: (d, p) => AccessCard.Create(d, p, Daiko.Cards.Access.AccessCardKdf.ForTests));
        using var access = AccessCard.Open(terminalDir);
        access.Unlock("432100");
        await using var control = await TerminalClient.ConnectAsync(terminalDir, access.DeviceKey, CancellationToken.None);
        await new HomeControl(control).UnlockAsync("1111", "2222", CancellationToken.None);
        var connector = new DelegatedConnector(control);
        var credential = SoftwareSigner.LoadCredential(pki.User.CertificatePath, pki.User.KeyPath);

        var ways = new (string Name, Func<Task<Stream>> Open)[]
        {
            ("direct Daiko.Tls", async () => await TlsClient.ConnectAsync("127.0.0.1", nginx.Port,
                new TlsClientOptions { ServerName = "localhost", ClientCredential = credential, CertificateValidator = new X509ChainValidator([pki.Root]) }, CancellationToken.None)),
            ("relay", async () => (await connector.ConnectAsync("localhost", nginx.Port, DelegationMode.Relay)).Stream),
            ("handoff", async () => (await connector.ConnectAsync("localhost", nginx.Port, DelegationMode.Handoff)).Stream),
        };
        // One keep-alive connection per way, the requests interleaved (direct, relay, handoff, direct, ...)
        // like the throughput runs, so that every way sees the same machine state.
        var exchanges = new List<(string Name, Stream Stream, KeepAliveExchange Exchange, List<double> Samples)>();
        foreach (var (name, open) in ways)
        {
            var stream = await open();
            exchanges.Add((name, stream, new KeepAliveExchange(stream), new List<double>(requests)));
        }
        try
        {
            for (var i = 0; i < 50; i++)
            {
                foreach (var way in exchanges) await way.Exchange.GetAsync(); // warm-up
            }
            for (var i = 0; i < requests; i++)
            {
                foreach (var way in exchanges)
                {
                    var clock = Stopwatch.StartNew();
                    await way.Exchange.GetAsync();
                    way.Samples.Add(clock.Elapsed.TotalMilliseconds);
                }
            }
        }
        finally
        {
            foreach (var way in exchanges) await way.Stream.DisposeAsync();
        }
        var parts = new List<string>();
        (double P50, double P99)? direct = null;
        foreach (var (name, _, _, samples) in exchanges)
        {
            var sorted = samples.Order().ToArray();
            var (p50, p99) = (Distribution.Percentile(sorted, 0.5), Distribution.Percentile(sorted, 0.99));
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{name} p50 {p50:0.000} ms p99 {p99:0.000} ms") +
                (direct is { } d ? string.Create(CultureInfo.InvariantCulture, $" (+{p50 - d.P50:0.000} / +{p99 - d.P99:0.000} ms)") : ""));
            direct ??= (p50, p99);
        }
        return $"latency per keep-alive GET to nginx over loopback, {requests} requests each, the ways interleaved: {string.Join("; ", parts)}";
    }

    /// <summary>HTTP/1.1 requests one after another on one connection, each answer read by its Content-Length.</summary>
    private sealed class KeepAliveExchange(Stream stream)
    {
        private static readonly byte[] Request = Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        private readonly byte[] _buffer = new byte[16 * 1024];
        private int _filled;

        public async Task GetAsync()
        {
            await stream.WriteAsync(Request);
            int headerEnd;
            while ((headerEnd = _buffer.AsSpan(0, _filled).IndexOf("\r\n\r\n"u8)) < 0) await FillAsync();
            var headers = Encoding.ASCII.GetString(_buffer, 0, headerEnd);
            var lengthLine = headers.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                ?? throw new InvalidOperationException("the answer has no Content-Length");
            var total = headerEnd + 4 + int.Parse(lengthLine["Content-Length:".Length..].Trim(), CultureInfo.InvariantCulture);
            while (_filled < total) await FillAsync();
            _buffer.AsSpan(total, _filled - total).CopyTo(_buffer);
            _filled -= total;
        }

        private async Task FillAsync()
        {
            var n = await stream.ReadAsync(_buffer.AsMemory(_filled));
            if (n == 0) throw new InvalidOperationException("the market closed the keep-alive connection");
            _filled += n;
        }
    }
}
