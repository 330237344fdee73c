using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Daiko.TestSupport.Hostile;

namespace Daiko.Bench.Flood;

/// <summary>
/// <c>flood [--connections N] [--hold SECONDS] [--out DIR]</c>: a real <c>daiko home serve</c> process
/// flooded with hostile connections from 127.0.0.2… (a third stop after TCP connect, a third complete
/// TLS without a certificate and stay silent, a third announce a large frame and trickle its body),
/// while an enrolled terminal behind the first of those addresses connects and asks for the card status
/// every 200 ms. Reports the server's resident memory before, at its peak and its growth, and the
/// terminal's latency (fresh connection with its device certificate, TLS handshake and one request)
/// before and during the flood.
/// </summary>
public static class FloodBenchmark
{
    private const int Addresses = 8;

    public static async Task<int> RunAsync(string[] args)
    {
        var connections = IntArg(args, "--connections", 1000);
        var hold = TimeSpan.FromSeconds(IntArg(args, "--hold", 10));
        var outDir = ArgValue(args, "--out") ?? Path.Combine(AppContext.BaseDirectory, "../../../../results");
        using var dir = new TempDirectory("daiko-bench-flood");
        var home = Path.Combine(dir.Path, "home");
        await Cli(["home", "init", "--home", home, "--subject", TestPki.UserSubject], "1111\n2222\nadmin-code-123\n");
        var port = Loopback.FreePort();
        using var server = DaikoCli.Start(["home", "serve", "--home", home, "--listen", $"127.0.0.1:{port}"]);
        await server.WaitForOutputAsync("home server listening", TimeSpan.FromSeconds(60));
        var code = (await Cli(["home", "device", "add", "--home", home, "--name", "terminal"])).StandardOutput.Trim();
        const string nat = "127.0.0.2";
        using var device = await ControlPeer.EnrollAsync(port, code, nat);

        async Task<double> TerminalOnceAsync()
        {
            var clock = Stopwatch.StartNew();
            await using var peer = await ControlPeer.ConnectAsync(port, nat, device, TimeSpan.FromSeconds(60));
            var reply = await peer.RequestAsync(1, new CardStatusRequest(), TimeSpan.FromSeconds(60));
            if (reply is not CardStatusReply) throw new InvalidOperationException($"the terminal was answered {reply}");
            return clock.Elapsed.TotalMilliseconds;
        }

        for (var i = 0; i < 5; i++) await TerminalOnceAsync();
        var before = new List<double>();
        for (var i = 0; i < 20; i++) before.Add(await TerminalOnceAsync());
        await Task.Delay(500);
        var rssBefore = Rss(server.Id, "VmRSS");

        using var stop = new CancellationTokenSource();
        var peak = rssBefore;
        var sampling = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                peak = Math.Max(peak, Rss(server.Id, "VmRSS"));
                await Task.Delay(50);
            }
        });
        var during = new List<double>();
        var failures = 0;
        var measuring = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try { during.Add(await TerminalOnceAsync()); }
                catch (Exception e) when (e is IOException or TimeoutException or InvalidOperationException or AuthenticationException or SocketException or OperationCanceledException)
                {
                    failures++;
                }
                await Task.Delay(200);
            }
        });

        var cpuBefore = CpuSeconds(server.Id);
        var clock = Stopwatch.StartNew();
        var hostile = new List<IDisposable>();
        var opened = 0;
        var refused = 0;
        var gate = new SemaphoreSlim(32);
        var flood = Enumerable.Range(0, connections).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                var held = await HostileAsync(port, $"127.0.0.{2 + i % Addresses}", i % 3);
                lock (hostile) hostile.Add(held);
                Interlocked.Increment(ref opened);
            }
            catch (Exception e) when (e is IOException or SocketException or AuthenticationException or OperationCanceledException)
            {
                Interlocked.Increment(ref refused);
            }
            finally
            {
                gate.Release();
            }
        }).ToList();
        await Task.WhenAll(flood);
        var floodTime = clock.Elapsed;
        var floodCpu = CpuSeconds(server.Id) - cpuBefore;
        await Task.Delay(hold);
        await stop.CancelAsync();
        await Task.WhenAll(sampling, measuring);
        var stillOpen = hostile.OfType<HeldConnection>().Count(h => h.StillOpen());
        foreach (var h in hostile) h.Dispose();

        var report = Report(connections, opened, refused, stillOpen, floodTime, floodCpu, hold, rssBefore, peak, before, during, failures);
        Console.Write(report);
        Directory.CreateDirectory(outDir);
        await File.WriteAllTextAsync(Path.Combine(outDir, "flood.md"), report);
        return peak - rssBefore < 64L << 20 && during.Count > 0 && during.Max() < 1000 && failures == 0 ? 0 : 1;
    }

    /// <summary>One hostile connection, held open: 0 = TCP only, 1 = TLS without a certificate then silence, 2 = a 16 KiB frame announced and trickled.</summary>
    private static async Task<IDisposable> HostileAsync(int port, string from, int kind)
    {
        var tcp = new TcpClient(new IPEndPoint(IPAddress.Parse(from), 0));
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await tcp.ConnectAsync(IPAddress.Loopback, port, cts.Token);
            if (kind == 0) return new HeldConnection(tcp, null);
            var ssl = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "daiko-home",
                EnabledSslProtocols = SslProtocols.Tls13,
                ApplicationProtocols = [new SslApplicationProtocol(ControlProtocol.Alpn)],
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            }, cts.Token);
            if (kind == 2)
            {
                var prefix = new byte[4 + 1000];
                BinaryPrimitives.WriteUInt32BigEndian(prefix, ControlProtocol.MaxUnauthenticatedFrameBytes);
                await ssl.WriteAsync(prefix, cts.Token);
                await ssl.FlushAsync(cts.Token);
            }
            return new HeldConnection(tcp, ssl);
        }
        catch
        {
            tcp.Dispose();
            throw;
        }
    }

    private sealed class HeldConnection(TcpClient tcp, SslStream? ssl) : IDisposable
    {
        public bool StillOpen()
        {
            try
            {
                return !(tcp.Client.Poll(0, SelectMode.SelectRead) && tcp.Client.Available == 0);
            }
            catch (ObjectDisposedException)
            {
                return false;
            }
        }

        public void Dispose()
        {
            ssl?.Dispose();
            tcp.Dispose();
        }
    }

    private static string Report(int connections, int opened, int refused, int stillOpen, TimeSpan floodTime, double floodCpu, TimeSpan hold, long rssBefore, long peak, List<double> before, List<double> during, int failures)
    {
        static string Ms(List<double> xs, double q) => xs.Count == 0 ? "-" : xs.Order().ElementAt((int)Math.Min(xs.Count - 1, Math.Floor(q * xs.Count))).ToString("0", CultureInfo.InvariantCulture);
        var mib = (peak - rssBefore) / 1048576.0;
        var b = new StringBuilder();
        b.AppendLine("# Flood: hostile connections against a real `daiko home serve`");
        b.AppendLine();
        b.AppendLine($"Run {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, `nice`d, on a machine shared with other work (numbers are upper bounds).");
        b.AppendLine($"{connections} hostile connections from {Addresses} loopback addresses (127.0.0.2–127.0.0.{1 + Addresses}), 32 at a time, then held {hold.TotalSeconds:0} s;");
        b.AppendLine("a third stop after TCP connect, a third finish TLS without a certificate and stay silent, a third announce a 16 KiB frame and send 1000 bytes of it.");
        b.AppendLine("The enrolled terminal connects from 127.0.0.2 — behind the same address as an eighth of the flood — with its device certificate and asks for the card status, every 200 ms.");
        b.AppendLine();
        b.AppendLine("| measure | value | goal |");
        b.AppendLine("|---|---|---|");
        b.AppendLine($"| hostile connections opened / refused while opening | {opened} / {refused} | |");
        b.AppendLine($"| time to open them | {floodTime.TotalSeconds:0.0} s | |");
        b.AppendLine($"| server CPU while they opened (user + system; per hostile connection) | {floodCpu:0.00} s ({1000 * floodCpu / Math.Max(1, opened):0.00} ms) | |");
        b.AppendLine($"| hostile connections not seen closed at the end (a TLS connection the server closed with an unread alert counts as open: an over-count) | {stillOpen} | at most 256 (16 per address) |");
        b.AppendLine($"| server RSS before | {rssBefore / 1048576.0:0.0} MiB | |");
        b.AppendLine($"| server RSS peak during the flood | {peak / 1048576.0:0.0} MiB | |");
        b.AppendLine($"| **RSS growth** | **{mib:0.0} MiB** | < 64 MiB |");
        b.AppendLine($"| terminal latency before (median / p95 / max, n={before.Count}) | {Ms(before, 0.5)} / {Ms(before, 0.95)} / {Ms(before, 1)} ms | |");
        b.AppendLine($"| **terminal latency during the flood** (median / p95 / max, n={during.Count}) | **{Ms(during, 0.5)} / {Ms(during, 0.95)} / {Ms(during, 1)} ms** | < 1000 ms |");
        b.AppendLine($"| terminal requests that failed during the flood | {failures} | 0 |");
        return b.ToString();
    }

    /// <summary>User plus system CPU time of a process (/proc/PID/stat, in clock ticks of 1/100 s): unlike wall time, hardly moved by other work on the machine.</summary>
    private static double CpuSeconds(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private static long Rss(int pid, string field)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith(field + ":", StringComparison.Ordinal)) return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
            }
        }
        catch (IOException)
        {
            // The process ended.
        }
        return 0;
    }

    private static async Task<CliResult> Cli(string[] args, string? stdin = null)
    {
        var result = await DaikoCli.RunAsync(args, stdin, TimeSpan.FromSeconds(120));
        return result.ExitCode == 0 ? result : throw new InvalidOperationException($"daiko {string.Join(' ', args)} failed: {result}");
    }

    private static string? ArgValue(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static int IntArg(string[] args, string name, int fallback) =>
        ArgValue(args, name) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
}
