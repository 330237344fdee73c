using System.Diagnostics;
using Daiko.Bench.Load;

namespace Daiko.Bench.Hosted;

/// <summary>An operation a terminal repeats in a measured window: a delegated session or a payment.</summary>
public enum HostedOperation
{
    Session,
    Resume,
    Payment,
}

/// <summary>
/// One setup under measurement: its terminals (each as its two operations), the server processes
/// answering them (one home server, one node, or three nodes), and the processes behind them whose
/// CPU counts too (PostgreSQL with its backends, HAProxy). Windows of each operation add up in
/// <see cref="Totals"/>, so that windows interleaved with other setups' make one figure.
/// </summary>
public sealed class HostedSetup(string name, IReadOnlyList<Func<HostedOperation, Task>> terminals, IReadOnlyList<(string Name, ProcessSampler Process)> servers,
    ProcessSampler? database = null, ProcessSampler? balancer = null)
{
    public string Name => name;

    public int Terminals => terminals.Count;

    public IReadOnlyList<(string Name, ProcessSampler Process)> Servers => servers;

    public Dictionary<HostedOperation, Totals> Results { get; } = new() { [HostedOperation.Session] = new(), [HostedOperation.Resume] = new(), [HostedOperation.Payment] = new() };

    /// <summary>What the windows of one operation added up to.</summary>
    public sealed class Totals
    {
        public LoadRunner.Tally Tally { get; } = new();

        public double Seconds { get; set; }

        /// <summary>CPU seconds of each server process, in the order of <see cref="Servers"/>.</summary>
        public double[] ServerCpu { get; set; } = [];

        public double DatabaseCpu { get; set; }

        public double BalancerCpu { get; set; }

        /// <summary>CPU seconds of the load generator (this process: the terminals' side).</summary>
        public double GeneratorCpu { get; set; }

        /// <summary>Peak resident memory of each server process seen in these windows, MiB.</summary>
        public double[] PeakRssMb { get; set; } = [];

        public double PerSecond => Tally.Count / Seconds;

        public double MsPerOperation(double cpuSeconds) => Tally.Count == 0 ? double.NaN : cpuSeconds * 1000 / Tally.Count;
    }

    /// <summary>CPU ms a second each server process used while no terminal asked anything (background work: timers, notifications, pools).</summary>
    public double[] IdleCpuMsPerSecond { get; private set; } = [];

    /// <summary>Measures <see cref="IdleCpuMsPerSecond"/> over <paramref name="duration"/> with every terminal quiet.</summary>
    public async Task MeasureIdleAsync(TimeSpan duration)
    {
        var cpu = servers.Select(s => s.Process.CpuSeconds()).ToArray();
        var clock = Stopwatch.StartNew();
        await Task.Delay(duration);
        IdleCpuMsPerSecond = servers.Select((s, i) => (s.Process.CpuSeconds() - cpu[i]) * 1000 / clock.Elapsed.TotalSeconds).ToArray();
    }

    /// <summary>Every terminal runs <paramref name="operation"/> untimed <paramref name="times"/> times (JIT, caches, pools on every side).</summary>
    public async Task WarmUpAsync(int times)
    {
        var tally = new LoadRunner.Tally();
        foreach (var operation in Enum.GetValues<HostedOperation>())
        {
            await Task.WhenAll(terminals.Select(async t =>
            {
                for (var i = 0; i < times; i++) await tally.TimeAsync(() => t(operation));
            }));
        }
        Console.WriteLine($"  {name}: warm-up {tally.Count} operations, {tally.Errors} errors{(tally.FirstError is null ? "" : " (first: " + tally.FirstError + ")")}");
    }

    /// <summary>
    /// One window: every terminal runs <paramref name="operation"/> back to back (closed loop) for
    /// <paramref name="duration"/>; the servers' RSS is sampled every 100 ms for its peak.
    /// </summary>
    public async Task MeasureAsync(HostedOperation operation, TimeSpan duration)
    {
        var totals = Results[operation];
        if (totals.ServerCpu.Length == 0)
        {
            totals.ServerCpu = new double[servers.Count];
            totals.PeakRssMb = new double[servers.Count];
        }
        var cpu = servers.Select(s => s.Process.CpuSeconds()).ToArray();
        var databaseCpu = database?.CpuSecondsWithChildren() ?? 0;
        var balancerCpu = balancer?.CpuSeconds() ?? 0;
        var generatorCpu = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                for (var i = 0; i < servers.Count; i++) totals.PeakRssMb[i] = Math.Max(totals.PeakRssMb[i], servers[i].Process.RssMb());
                await Task.Delay(100, CancellationToken.None);
            }
        });
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(terminals.Select(async t =>
        {
            while (clock.Elapsed < duration) await totals.Tally.TimeAsync(() => t(operation));
        }));
        totals.Seconds += clock.Elapsed.TotalSeconds;
        await stop.CancelAsync();
        await sampler;
        for (var i = 0; i < servers.Count; i++) totals.ServerCpu[i] += servers[i].Process.CpuSeconds() - cpu[i];
        totals.DatabaseCpu += (database?.CpuSecondsWithChildren() ?? 0) - databaseCpu;
        totals.BalancerCpu += (balancer?.CpuSeconds() ?? 0) - balancerCpu;
        totals.GeneratorCpu += Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - generatorCpu;
    }
}
