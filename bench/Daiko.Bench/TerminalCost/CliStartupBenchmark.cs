using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Daiko.Bench.Reporting;
using Daiko.Cards;
using Daiko.TestSupport;
using Daiko.Terminal;

namespace Daiko.Bench.TerminalCost;

/// <summary>
/// <c>cli-startup --alt DLL [--runs N] [--rtt-ms N] [--kbps N]</c>: the second command after unlock
/// (<c>terminal get --mode relay --stats</c> through the agent) run by two builds of the daiko CLI, the
/// test build and <c>--alt</c> (e.g. a ReadyToRun publish), each also with TieredPGO off, interleaved
/// run by run so that the machine's load falls on every variant alike. Reports the CLI's elapsed_ms
/// (its command, JIT included, start-up not) and the whole process's wall time.
/// </summary>
public static class CliStartupBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var i = Array.IndexOf(args, "--alt");
        if (i < 0 || i + 1 >= args.Length) throw new ArgumentException("give --alt DLL: the other daiko.dll to compare");
        var alt = Path.GetFullPath(args[i + 1]);
        int Int(string name, int fallback) => Array.IndexOf(args, name) is var j and >= 0 ? int.Parse(args[j + 1], CultureInfo.InvariantCulture) : fallback;
        var runs = Int("--runs", 15);
        var rtt = TimeSpan.FromMilliseconds(Int("--rtt-ms", 100));
        var kbps = Int("--kbps", 1000);

        using var dir = new TempDirectory("daiko-bench-cli");
        var pki = TestPki.Create(Path.Combine(dir.Path, "pki"));
        using var nginx = await NginxServer.StartAsync(pki, dir.Path);
        var home = Path.Combine(dir.Path, "home");
        var terminalDir = Path.Combine(dir.Path, "terminal");
        await TerminalCostBenchmark.SetUpHomeAsync(pki, home, dir.Path);
        var homePort = Loopback.FreePort();
        using var server = DaikoCli.Start(["home", "serve", "--home", home, "--listen", $"127.0.0.1:{homePort}"]);
        await server.WaitForOutputAsync("home server listening", TimeSpan.FromSeconds(30));
        var code = (await DaikoCli.RunAsync(LoopbackMarkets.DeviceAdd(home, "bench"))).StandardOutput.Trim();
        using var marketLink = await LinkProcess.StartAsync(nginx.Port, rtt, kbps);
        using var homeLink = await LinkProcess.StartAsync(homePort, rtt, kbps);
        await TerminalClient.EnrollAsync(terminalDir, $"127.0.0.1:{homeLink.Port}", code, "432100", createAccessCard: (d, p) => AccessCard.Create(d, p, Daiko.Cards.Access.AccessCardKdf.ForTests));
        var unlocked = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", terminalDir], "432100\n1111\n2222\n");
        if (unlocked.ExitCode != 0) throw new InvalidOperationException($"unlock: {unlocked}");

        var variants = new (string Name, string Dll, string? Pgo)[]
        {
            ("build output (JIT)", DaikoCli.DllPath, null),
            ("build output, TieredPGO off", DaikoCli.DllPath, "0"),
            ($"--alt {Path.GetFileName(Path.GetDirectoryName(alt))}", alt, null),
            ($"--alt {Path.GetFileName(Path.GetDirectoryName(alt))}, TieredPGO off", alt, "0"),
        };
        string[] get = ["terminal", "get", $"https://localhost:{nginx.Port}/whoami", "--terminal", terminalDir, "--connect-to", $"127.0.0.1:{marketLink.Port}", "--mode", "relay", "--stats"];
        var samples = variants.Select(_ => (Elapsed: new List<double>(), Wall: new List<double>())).ToArray();
        foreach (var v in variants) await RunOnceAsync(v.Dll, v.Pgo, get); // warm-up: disk caches
        for (var run = 0; run < runs; run++)
        {
            // Each round starts with another variant, so none always follows the same one.
            for (var k = 0; k < variants.Length; k++)
            {
                var n = (run + k) % variants.Length;
                var (elapsed, wall) = await RunOnceAsync(variants[n].Dll, variants[n].Pgo, get);
                samples[n].Elapsed.Add(elapsed);
                samples[n].Wall.Add(wall);
            }
        }
        await DaikoCli.RunAsync(["terminal", "lock", "--terminal", terminalDir]);

        var md = new StringBuilder();
        md.AppendLine($"Second command after unlock (`daiko terminal get --mode relay --stats` through the agent), {runs} interleaved runs per variant, {rtt.TotalMilliseconds} ms / {kbps} kbit/s link; median (p10–p90).");
        md.AppendLine();
        md.AppendLine("| CLI | elapsed_ms (command, JIT included) | process wall ms (start-up included) |");
        md.AppendLine("|---|---|---|");
        for (var n = 0; n < variants.Length; n++)
        {
            md.AppendLine($"| {variants[n].Name} | {Distribution.Of(samples[n].Elapsed).Format()} | {Distribution.Of(samples[n].Wall).Format()} |");
        }
        Console.WriteLine(md);
        return 0;
    }

    private static async Task<(double ElapsedMs, double WallMs)> RunOnceAsync(string dll, string? tieredPgo, string[] arguments)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var a in arguments) info.ArgumentList.Add(a);
        if (tieredPgo is not null) info.Environment["DOTNET_TieredPGO"] = tieredPgo;
        var wall = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var wallMs = wall.Elapsed.TotalMilliseconds;
        if (process.ExitCode != 0) throw new InvalidOperationException($"{dll}: exit {process.ExitCode}: {await stderr}");
        await stdout;
        var stats = JsonDocument.Parse((await stderr).Trim().Split('\n')[^1]).RootElement;
        return (stats.GetProperty("elapsed_ms").GetDouble(), wallMs);
    }
}
