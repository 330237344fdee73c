using System.Diagnostics;

namespace Daiko.Bench.Load;

/// <summary>One measured run: a mode at a number of terminals.</summary>
public sealed record LoadRun(string Mode, int Terminals, int Sessions, double Seconds, double P50Ms, double P99Ms, int Errors, double HomeRssMb, double HomeCpuSeconds, string? FirstError)
{
    /// <summary>The load generator's own CPU seconds over the timed part (it shares the cores with the home server and nginx).</summary>
    public double GeneratorCpuSeconds { get; init; } = double.NaN;

    /// <summary>The load generator's CPU per session, in ms.</summary>
    public double GeneratorCpuMsPerSession => Sessions == 0 ? double.NaN : GeneratorCpuSeconds * 1000 / Sessions;

    /// <summary>The market's (nginx's) user+system CPU over the same timed part.</summary>
    public double MarketCpuSeconds { get; init; } = double.NaN;

    public double MarketCpuMsPerSession => Sessions == 0 ? double.NaN : MarketCpuSeconds * 1000 / Sessions;

    public double SessionsPerSecond => Sessions / Seconds;

    /// <summary>The home server's CPU per session, in ms.</summary>
    public double HomeCpuMsPerSession => Sessions == 0 ? double.NaN : HomeCpuSeconds * 1000 / Sessions;

    /// <summary>
    /// What the home server allocated per session, in KB: its runtime's allocation rate over the seconds
    /// of the row, over the row's session rate. Closed-loop rows only (NaN otherwise: the others interleave
    /// untimed work, such as a prefetch, with the timed sessions).
    /// </summary>
    public double HomeAllocKbPerSession { get; init; } = double.NaN;
}

/// <summary>Drives many terminals at once and counts sessions, latencies and errors.</summary>
public static class LoadRunner
{
    /// <summary>Latencies in ms and the errors of a group of concurrent loops.</summary>
    public sealed class Tally
    {
        private readonly List<double> _latencies = [];
        private int _errors;
        private string? _firstError;

        public int Errors => _errors;

        public string? FirstError => _firstError;

        public int Count
        {
            get { lock (_latencies) return _latencies.Count; }
        }

        public void Add(double ms)
        {
            lock (_latencies) _latencies.Add(ms);
        }

        public void Failed(Exception e)
        {
            Interlocked.Increment(ref _errors);
            Interlocked.CompareExchange(ref _firstError, $"{e.GetType().Name}: {e.Message}", null);
        }

        public (double P50, double P99) Percentiles()
        {
            lock (_latencies)
            {
                if (_latencies.Count == 0) return (double.NaN, double.NaN);
                var sorted = _latencies.Order().ToList();
                double At(double q) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];
                return (At(0.50), At(0.99));
            }
        }

        /// <summary>Times <paramref name="once"/>; an exception is counted as an error (and its first message kept for the report), never hidden. False when it failed.</summary>
        /// <param name="rethrow">the exception, counted here, also goes on to the caller (a tally inside another).</param>
        public async Task<bool> TimeAsync(Func<Task> once, long? scheduled = null, bool rethrow = false)
        {
            var start = scheduled ?? Stopwatch.GetTimestamp();
            try
            {
                await once();
                Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                return true;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Failed(e);
                if (rethrow) throw;
                return false;
            }
        }
    }

    /// <summary>Closed loop: each terminal runs sessions back to back until <paramref name="duration"/> has passed.</summary>
    public static async Task<LoadRun> ClosedAsync<T>(string mode, IReadOnlyList<T> terminals, TimeSpan duration, ProcessSampler home, Func<T, Task> session)
    {
        var tally = new Tally();
        var cpu = home.CpuSeconds();
        var generator = ProcessSampler.Self.CpuSeconds();
        var market = ProcessSampler.MarketCpu();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(terminals.Select(async t =>
        {
            while (clock.Elapsed < duration) await tally.TimeAsync(() => session(t));
        }));
        return Finish(mode, terminals.Count, tally, clock.Elapsed.TotalSeconds, home, cpu, generator, market);
    }

    /// <summary>
    /// A fixed amount of work in rounds: every terminal prepares (not timed: e.g. has its cache filled),
    /// then each runs <paramref name="sessions"/> sessions back to back; the rate counts the timed parts.
    /// </summary>
    public static async Task<LoadRun> CountedAsync<T>(string mode, IReadOnlyList<T> terminals, int sessions, int rounds, ProcessSampler home, Func<T, Task> prepare, Func<T, Task> session)
    {
        var tally = new Tally();
        var timed = TimeSpan.Zero;
        var cpu = 0.0;
        var generator = 0.0;
        var market = 0.0;
        for (var round = 0; round < rounds; round++)
        {
            await Task.WhenAll(terminals.Select(t => Prepared(tally, () => prepare(t))));
            var before = home.CpuSeconds();
            var generatorBefore = ProcessSampler.Self.CpuSeconds();
            var marketBefore = ProcessSampler.MarketCpu();
            var clock = Stopwatch.StartNew();
            await Task.WhenAll(terminals.Select(async t =>
            {
                for (var i = 0; i < sessions; i++) await tally.TimeAsync(() => session(t));
            }));
            timed += clock.Elapsed;
            cpu += home.CpuSeconds() - before;
            generator += ProcessSampler.Self.CpuSeconds() - generatorBefore;
            market += ProcessSampler.MarketCpu() - marketBefore;
        }
        var (p50, p99) = tally.Percentiles();
        return new LoadRun(mode, terminals.Count, tally.Count, timed.TotalSeconds, p50, p99, tally.Errors, home.RssMb(), cpu, tally.FirstError) { GeneratorCpuSeconds = generator, MarketCpuSeconds = market };
    }

    private static async Task Prepared(Tally tally, Func<Task> prepare)
    {
        try
        {
            await prepare();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            tally.Failed(e);
        }
    }

    /// <summary>
    /// Open loop: requests start on a fixed schedule at <paramref name="perSecond"/> whatever the
    /// answers (request i on terminal i mod K), and each latency runs from its scheduled start, so a
    /// slow answer delays no later request and is not hidden (no coordinated omission).
    /// </summary>
    public static async Task<LoadRun> OpenAsync<T>(string mode, IReadOnlyList<T> terminals, double perSecond, TimeSpan duration, ProcessSampler home, Func<T, Task> request)
    {
        var tally = new Tally();
        var cpu = home.CpuSeconds();
        var generator = ProcessSampler.Self.CpuSeconds();
        var market = ProcessSampler.MarketCpu();
        var start = Stopwatch.GetTimestamp();
        await OpenIntoAsync(tally, terminals, perSecond, duration, request);
        return Finish(mode, terminals.Count, tally, Stopwatch.GetElapsedTime(start).TotalSeconds, home, cpu, generator, market);
    }

    /// <summary>
    /// Two open loops at the same rate, taking turns in <paramref name="slices"/> slices each (a, b, a, b, …)
    /// so that both meet the same moments of a shared machine; each latency is counted for its own way.
    /// </summary>
    public static async Task<(LoadRun A, LoadRun B)> OpenAlternatingAsync<TA, TB>(
        (string Mode, IReadOnlyList<TA> Terminals, Func<TA, Task> Request) a, (string Mode, IReadOnlyList<TB> Terminals, Func<TB, Task> Request) b,
        double perSecond, TimeSpan duration, int slices, ProcessSampler home)
    {
        var (tallyA, tallyB) = (new Tally(), new Tally());
        var (cpuA, cpuB, genA, genB, secondsA, secondsB) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        var slice = duration / slices;
        for (var i = 0; i < slices; i++)
        {
            var (c, g, t) = (home.CpuSeconds(), ProcessSampler.Self.CpuSeconds(), Stopwatch.GetTimestamp());
            await OpenIntoAsync(tallyA, a.Terminals, perSecond, slice, a.Request);
            (cpuA, genA, secondsA) = (cpuA + home.CpuSeconds() - c, genA + ProcessSampler.Self.CpuSeconds() - g, secondsA + Stopwatch.GetElapsedTime(t).TotalSeconds);
            (c, g, t) = (home.CpuSeconds(), ProcessSampler.Self.CpuSeconds(), Stopwatch.GetTimestamp());
            await OpenIntoAsync(tallyB, b.Terminals, perSecond, slice, b.Request);
            (cpuB, genB, secondsB) = (cpuB + home.CpuSeconds() - c, genB + ProcessSampler.Self.CpuSeconds() - g, secondsB + Stopwatch.GetElapsedTime(t).TotalSeconds);
        }
        LoadRun Run(string mode, int terminals, Tally tally, double seconds, double cpu, double generator)
        {
            var (p50, p99) = tally.Percentiles();
            return new LoadRun(mode, terminals, tally.Count, seconds, p50, p99, tally.Errors, home.RssMb(), cpu, tally.FirstError) { GeneratorCpuSeconds = generator };
        }
        return (Run(a.Mode, a.Terminals.Count, tallyA, secondsA, cpuA, genA), Run(b.Mode, b.Terminals.Count, tallyB, secondsB, cpuB, genB));
    }

    private static async Task OpenIntoAsync<T>(Tally tally, IReadOnlyList<T> terminals, double perSecond, TimeSpan duration, Func<T, Task> request)
    {
        var start = Stopwatch.GetTimestamp();
        var interval = Stopwatch.Frequency / perSecond;
        var total = (int)(perSecond * duration.TotalSeconds);
        var running = new List<Task>(total);
        for (var i = 0; i < total; i++)
        {
            var due = start + (long)(i * interval);
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
            if (wait > TimeSpan.FromMilliseconds(1)) await Task.Delay(wait);
            var terminal = terminals[i % terminals.Count];
            running.Add(Task.Run(() => tally.TimeAsync(() => request(terminal), due)));
        }
        await Task.WhenAll(running);
    }

    private static LoadRun Finish(string mode, int terminals, Tally tally, double seconds, ProcessSampler home, double cpuBefore, double generatorBefore, double marketBefore)
    {
        var (p50, p99) = tally.Percentiles();
        return new LoadRun(mode, terminals, tally.Count, seconds, p50, p99, tally.Errors, home.RssMb(), home.CpuSeconds() - cpuBefore, tally.FirstError)
        {
            GeneratorCpuSeconds = ProcessSampler.Self.CpuSeconds() - generatorBefore,
            MarketCpuSeconds = ProcessSampler.MarketCpu() - marketBefore,
        };
    }
}
