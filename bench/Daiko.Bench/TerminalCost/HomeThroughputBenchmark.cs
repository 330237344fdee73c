using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using Daiko.Cards;
using Daiko.Home.Delegation;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Bench.TerminalCost;

/// <summary>
/// Delegated full handshakes per second (CertificateVerify signed in the home card on SoftHSM2)
/// against nginx, next to <c>openssl s_time -new</c> against the same nginx in the same run.
/// </summary>
public static partial class HomeThroughputBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var seconds = args.Contains("--quick") ? 2 : 10;
        using var dir = new TempDirectory("daiko-bench-home");
        var pki = TestPki.Create(Path.Combine(dir.Path, "pki"));
        using var nginx = await NginxServer.StartAsync(pki, dir.Path);
        using var card = HomeCard.Initialize(new HomeCardOptions(Path.Combine(dir.Path, "home")), HomeCardKeyType.P256, "1111", "2222", "admin-code-123");
        var request = CertificateRequest.LoadSigningRequest(card.CreateCertificateSigningRequest(TestPki.UserSubject, "2222"), HashAlgorithmName.SHA256);
        card.ImportCertificate(pki.IssueForPublicKey(request.PublicKey, TestPki.UserSubject).RawData, [pki.Root.RawData], "2222");
        card.EnterPin1("1111");
        card.EnterPin2("2222");
        var delegation = new DelegationService(() => new ClientCredential(card.CertificateChain, card.TlsSigner), new X509ChainValidator([pki.Root]),
            new SessionCache<SessionTicket>(), new MarketProfiles(Path.Combine(dir.Path, "home.db")));
        var market = new MarketRequest("localhost", nginx.Port, null, null);

        var clock = Stopwatch.StartNew();
        var daiko = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            await using var connection = await delegation.ConnectAsUserAsync(market, null, CancellationToken.None);
            daiko++;
        }
        var daikoRate = daiko / clock.Elapsed.TotalSeconds;

        using var sTime = new ExternalProcess("openssl", ["s_time", "-connect", $"127.0.0.1:{nginx.Port}", "-new", "-time", seconds.ToString(CultureInfo.InvariantCulture),
            "-cert", pki.User.CertificatePath, "-key", pki.User.KeyPath, "-CAfile", pki.RootPath]);
        await sTime.WaitForExitAsync(TimeSpan.FromSeconds(seconds + 30));
        var match = ConnectionsLine().Match(sTime.Output);
        var opensslRate = match.Success ? double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) / double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture) : double.NaN;

        var line = $"delegated full handshakes with the home card (SoftHSM2): {daikoRate:0.0}/s; openssl s_time -new (software key): {opensslRate:0.0}/s; ratio {daikoRate / opensslRate:0.00}";
        Console.WriteLine(line);
        var output = Path.Combine(TerminalCostBenchmark.FindRepoRoot(), "bench", "results");
        Directory.CreateDirectory(output);
        await File.WriteAllTextAsync(Path.Combine(output, args.Contains("--quick") ? "home-throughput-quick.md" : "home-throughput.md"), line + "\n");
        return double.IsNaN(opensslRate) ? 1 : 0;
    }

    [GeneratedRegex(@"(\d+) connections in ([\d.]+)s")]
    private static partial Regex ConnectionsLine();
}
