using System.Text.Json;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>The benchmarks in quick mode, so they cannot rot.</summary>
public sealed class BenchmarkQuickModeTests
{
    [Fact]
    public async Task TerminalCostBenchmark_QuickMode_MeasuresEveryWayAndChecksTheBound()
    {
        var dll = BenchDll();
        using var output = new TempDirectory("daiko-bench-quick");

        using var bench = new ExternalProcess("dotnet", [dll, "terminal-cost", "--quick", "--runs", "1", "--rtt-ms", "10", "--out", output.Path]);
        var exit = await bench.WaitForExitAsync(TimeSpan.FromMinutes(4));

        Assert.True(exit == 0, bench.Output);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output.Path, "terminal-cost-quick.json")));
        var ways = json.RootElement.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("way").GetString()).ToHashSet();
        foreach (var way in new[] { "direct Daiko.Tls", "direct SslStream", "direct openssl s_client", "daiko resume psk_dhe_ke", "daiko handoff", "daiko relay", "daiko assist", "daiko resume (TLS 1.2 market)" })
        {
            Assert.Contains(way, ways);
        }
        Assert.Contains("Bound of [0090]", File.ReadAllText(Path.Combine(output.Path, "terminal-cost-quick.md")), StringComparison.Ordinal);
        Assert.StartsWith("<svg", File.ReadAllText(Path.Combine(output.Path, "terminal-cost-quick.svg")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task HomeThroughputBenchmark_QuickMode_ReportsEveryRatioAgainstItsPeer()
    {
        using var output = new TempDirectory("daiko-bench-home-quick");

        using var bench = new ExternalProcess("dotnet", [BenchDll(), "home-throughput", "--quick", "--out", output.Path]);
        var exit = await bench.WaitForExitAsync(TimeSpan.FromMinutes(4));

        Assert.True(exit == 0, bench.Output);
        var report = File.ReadAllText(Path.Combine(output.Path, "home-throughput-quick.md"));
        Assert.Matches(@"delegated full handshakes .*: \d+\.\d/s; openssl s_time -new .*: \d+\.\d/s; ratio \d", report);
        Assert.Matches(@"download resumed Daiko\.Tls \d+ MB/s, SslStream \d+ MB/s, ratio \d", report);
        Assert.Matches(@"upload resumed Daiko\.Tls \d+ MB/s, SslStream \d+ MB/s, ratio \d", report);
        Assert.Matches(@"relay p50 \d+\.\d+ ms p99 \d+\.\d+ ms", report);
        Assert.Matches(@"handoff p50 \d+\.\d+ ms p99 \d+\.\d+ ms", report);
        Assert.Matches(@"payments with durable commits .*ratio \d", report);
    }

    private static string BenchDll()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Daiko.slnx"))) root = root.Parent;
        Assert.NotNull(root);
        return Directory.GetFiles(Path.Combine(root.FullName, "bench", "Daiko.Bench", "bin"), "Daiko.Bench.dll", SearchOption.AllDirectories).OrderByDescending(File.GetLastWriteTimeUtc).First();
    }
}
