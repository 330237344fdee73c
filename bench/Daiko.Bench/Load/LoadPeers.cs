using System.Diagnostics;
using System.Globalization;
using Daiko.Bench.TerminalCost;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Bench.Load;

/// <summary>The peers at the same concurrency as the terminals, against the same nginx, in the same run.</summary>
public static class LoadPeers
{
    /// <summary>K concurrent <c>openssl s_time -new</c> processes with the user's certificate (software key).</summary>
    /// <returns>the summed rate (each process's count over its -time seconds) and user CPU ms per handshake.</returns>
    public static async Task<(double PerSecond, double CpuMsPerHandshake, int Failed)> OpensslAsync(TestPki pki, int port, int terminals, int seconds)
    {
        var processes = Enumerable.Range(0, terminals).Select(_ => new ExternalProcess("openssl", ["s_time", "-connect", $"127.0.0.1:{port}", "-new",
            "-time", seconds.ToString(CultureInfo.InvariantCulture), "-cert", pki.User.CertificatePath, "-key", pki.User.KeyPath, "-CAfile", pki.RootPath])).ToList();
        try
        {
            double count = 0, cpu = 0;
            var failed = 0;
            foreach (var p in processes)
            {
                await p.WaitForExitAsync(TimeSpan.FromSeconds(seconds + 120));
                if (HomeThroughputBenchmark.OpensslCount(p.Output) is not { } c)
                {
                    failed++;
                    continue;
                }
                count += c.Count;
                cpu += c.UserCpuSeconds;
            }
            return (count / seconds, count == 0 ? double.NaN : cpu * 1000 / count, failed);
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
