using System.Diagnostics;
using System.Globalization;
using Daiko.Bench.TerminalCost;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Bench.Load;

/// <summary>The peers at the same concurrency as the terminals, against the same nginx, in the same run.</summary>
public static class LoadPeers
{
    /// <summary>What K concurrent <c>openssl s_time -new</c> processes did.</summary>
    /// <param name="PerSecond">Handshakes a second while all K ran: nginx's accepted connections over a window that starts once every process has started and ends before the first one stops.</param>
    /// <param name="WindowSeconds">That window's length.</param>
    /// <param name="SummedPerSecond">The sum over the processes of each one's own count over its -time seconds (counts the ramps at both ends as if all K ran).</param>
    /// <param name="CpuMsPerHandshake">The processes' user CPU a handshake, as s_time reports it.</param>
    /// <param name="NginxCpuMsPerHandshake">nginx's own CPU over the window, per connection it accepted in it.</param>
    public sealed record OpensslPeer(double PerSecond, double WindowSeconds, double SummedPerSecond, double CpuMsPerHandshake, int Failed, double NginxCpuMsPerHandshake = double.NaN);

    /// <summary>
    /// K concurrent <c>openssl s_time -new</c> processes with the user's certificate (software key). Each
    /// runs long enough that a window of <paramref name="seconds"/> fits after the last one started
    /// (starting 200 processes takes about a second here); the rate is counted by nginx over that window.
    /// </summary>
    public static async Task<OpensslPeer> OpensslAsync(TestPki pki, NginxServer nginx, int terminals, int seconds)
    {
        // Room for the processes to start (each reads its key and certificate) before the window and to spare after it.
        var lead = 2 + terminals / 100;
        var runFor = seconds + lead;
        var clock = Stopwatch.StartNew();
        var processes = Enumerable.Range(0, terminals).Select(_ => new ExternalProcess("openssl", ["s_time", "-connect", $"127.0.0.1:{nginx.Port}", "-new",
            "-time", runFor.ToString(CultureInfo.InvariantCulture), "-cert", pki.User.CertificatePath, "-key", pki.User.KeyPath, "-CAfile", pki.RootPath])).ToList();
        try
        {
            // The window: from a second after the last process was started to the first one's end less a margin.
            await Task.Delay(TimeSpan.FromSeconds(1));
            var from = clock.Elapsed;
            var acceptedBefore = await nginx.AcceptedAsync();
            var nginxProcess = new ProcessSampler(nginx.ProcessId) { Precise = true };
            var nginxCpuBefore = nginxProcess.CpuSeconds();
            var until = TimeSpan.FromSeconds(Math.Min(from.TotalSeconds + seconds, runFor - 0.3));
            if (until > clock.Elapsed) await Task.Delay(until - clock.Elapsed);
            var acceptedAfter = await nginx.AcceptedAsync();
            var nginxCpu = nginxProcess.CpuSeconds() - nginxCpuBefore;
            var window = (clock.Elapsed - from).TotalSeconds;
            double count = 0, cpu = 0;
            var failed = 0;
            foreach (var p in processes)
            {
                await p.WaitForExitAsync(TimeSpan.FromSeconds(runFor + 120));
                if (HomeThroughputBenchmark.OpensslCount(p.Output) is not { } c)
                {
                    failed++;
                    continue;
                }
                count += c.Count;
                cpu += c.UserCpuSeconds;
            }
            // The second status request is one of the accepted connections.
            return new OpensslPeer((acceptedAfter - acceptedBefore - 1) / window, window, count / runFor, count == 0 ? double.NaN : cpu * 1000 / count, failed,
                acceptedAfter - acceptedBefore > 1 ? nginxCpu * 1000 / (acceptedAfter - acceptedBefore - 1) : double.NaN);
        }
        finally
        {
            foreach (var p in processes) p.Dispose();
        }
    }

    /// <summary>K concurrent SslStream clients, full handshakes (resumption off), closed loop.</summary>
    public static Task<LoadRun> SslStreamAsync(TestPki pki, int port, int terminals, TimeSpan duration, ProcessSampler home) =>
        LoadRunner.ClosedAsync("sslstream direct", Enumerable.Range(0, terminals).ToList(), duration, home, async _ =>
        {
            await using var ssl = await SslStreamPeer.ConnectAsync(pki, port, resume: false);
        });

    /// <summary>A direct Daiko.Tls connection with the user's certificate (software key) and a GET of /whoami: the relay's open-loop peer.</summary>
    public static Func<int, Task> DirectWithRequest(TestPki pki, int port)
    {
        var credential = SoftwareSigner.LoadCredential(pki.User.CertificatePath, pki.User.KeyPath);
        var validator = new X509ChainValidator([pki.Root]);
        return async _ =>
        {
            await using var tls = await TlsClient.ConnectAsync("127.0.0.1", port, new TlsClientOptions
            {
                ServerName = "localhost",
                ClientCredential = credential,
                CertificateValidator = validator,
            }, CancellationToken.None);
            await LoadTerminal.ExpectWhoamiAsync(tls, CancellationToken.None);
        };
    }
}
