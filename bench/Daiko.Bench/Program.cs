using BenchmarkDotNet.Running;
using Daiko.Bench.TerminalCost;

namespace Daiko.Bench;

public static class Program
{
    /// <summary>
    /// <c>terminal-cost [--quick] [--runs N] [--rtt-ms N] [--kbps N] [--out DIR]</c>: the end-to-end
    /// cost benchmark; <c>home-throughput</c>: delegated handshakes/s against openssl s_time;
    /// <c>access-card-kdf [--seconds N]</c>: offline PIN guesses/s against a copied access-card key file;
    /// <c>purse-ops [--entries LIST] [--ops N]</c>: one payment's cost as the purse's log grows;
    /// <c>card-path [--seconds N]</c>: the home card on the delegation path (idle-clock resets, signatures against raw C_Sign);
    /// <c>purse-group [--payers N] [--per-payer N]</c>: concurrent payers with group commit against plain SQLite commits;
    /// <c>slow-link</c>: the emulated link as its own process (started by terminal-cost);
    /// <c>cli-startup --alt DLL [--runs N]</c>: the second command after unlock by two builds of the CLI, interleaved;
    /// <c>flood [--connections N] [--hold SECONDS] [--out DIR]</c>: hostile connections against a real home server;
    /// <c>load [--quick] [--terminals LIST] [--seconds N] [--out DIR]</c>: many terminals at once against a real home server
    /// (<c>load --soak [--terminals N] [--sessions N]</c>: the long mixed run);
    /// <c>hosted [--quick] [--owners N] [--terminals N] [--seconds N] [--rounds N] [--out DIR]</c>: one hosted node, three behind HAProxy
    /// and the SQLite home server in one run (delegated sessions/s, payments/s, memory and CPU per operation);
    /// anything else goes to BenchmarkDotNet (micro-benchmarks).
    /// </summary>
    public static async Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "terminal-cost") return await TerminalCostBenchmark.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "home-throughput") return await HomeThroughputBenchmark.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "access-card-kdf") return PinGuessing.PinGuessingBenchmark.Run(args[1..]);
        if (args.Length > 0 && args[0] == "flood") return await Flood.FloodBenchmark.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "purse-ops") return Daiko.Bench.Purse.PurseOpsBenchmark.Run(args[1..]);
        if (args.Length > 0 && args[0] == "card-path") return await Daiko.Bench.Cards.CardPathBenchmark.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "purse-group") return Daiko.Bench.Purse.PurseGroupCommitBenchmark.Run(args[1..]);
        if (args.Length > 0 && args[0] == "load") return await Load.LoadBenchmark.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "hosted") return await Hosted.HostedBenchmark.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "cli-startup") return await CliStartupBenchmark.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "slow-link") return await LinkProcess.ServeAsync(args[1..]);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
