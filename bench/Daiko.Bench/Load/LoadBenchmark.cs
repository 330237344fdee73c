using System.Globalization;
using Daiko.Bench.TerminalCost;
using Daiko.Terminal;
using Daiko.TestSupport;

namespace Daiko.Bench.Load;

/// <summary>
/// <c>load [--quick] [--terminals 1,10,100,200] [--seconds N] [--out DIR] [--only MODE [--alloc-types] [--market-psk-ke]] [--warm-up-seconds N] [--home-env NAME=VALUE]...</c>: many simulated terminals
/// (one process, each with its own enrolled device key and control channel) against a real
/// <c>daiko home serve</c> process and an nginx market that requires client certificates; per number
/// of terminals K and mode, delegated sessions per second, latency p50/p99, errors, the home server's
/// RSS and CPU; beside them, in the same run and at the same K, concurrent <c>openssl s_time -new</c>
/// (its rate counted by nginx while all K run) and SslStream full handshakes against the same nginx; and the relay's latency open-loop at half its
/// measured capacity next to direct connections at the same rate. <c>--soak</c> runs <see cref="LoadSoak"/>.
/// </summary>
public static class LoadBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Contains("--soak")) return await LoadSoak.RunAsync(args);
        var quick = args.Contains("--quick");
        var counts = Option(args, "--terminals", quick ? "1,10" : "1,10,100,200").Split(',').Select(k => int.Parse(k, CultureInfo.InvariantCulture)).ToList();
        var seconds = int.Parse(Option(args, "--seconds", quick ? "2" : "6"), CultureInfo.InvariantCulture);
        var output = Option(args, "--out", Path.Combine(TerminalCostBenchmark.FindRepoRoot(), "bench", "results"));
        Directory.CreateDirectory(output);
        var duration = TimeSpan.FromSeconds(seconds);
        var loadBefore = ProcessSampler.LoadAverage();
        var machineBefore = ProcessSampler.MachineCpu();

        // --market-psk-ke (with --only): nginx allows psk_ke and the terminals follow the home server's finding (--kex auto).
        var marketPskKe = args.Contains("--market-psk-ke");
        if (marketPskKe && !args.Contains("--only")) throw new ArgumentException("--market-psk-ke goes with --only MODE (its rows are printed, not written to load.md)");
        await using var rig = await LoadRig.StartAsync(counts.Max(), "daiko-bench-load", serverEnvironment: HomeEnvironment(args), marketPskKe: marketPskKe);
        if (marketPskKe) Console.WriteLine("  nginx allows psk_ke; the terminals resume as the home server's tickets say (--kex auto)");
        var runs = new List<LoadRun>();
        var peers = new List<LoadReport.Peer>();
        var alternated = new List<LoadAlternation.Alternated>();
        // The home server's runtime counters: what it allocates over each closed-loop row, per session.
        await using var runtime = RuntimeCounters.TryStart(rig.Home.Pid);
        string Garbage(LoadRun r) => double.IsNaN(r.HomeAllocKbPerSession) ? ""
            : string.Create(CultureInfo.InvariantCulture, $"  home alloc {r.HomeAllocKbPerSession:0} KB/session");
        // A closed-loop row with what the home server allocated per session (left out when the counters cannot be read).
        Task<LoadRun> Measured(Func<Task<LoadRun>> row) => runtime is null ? row() : runtime.MeasuredAsync(row);
        void Print(LoadRun r) => Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  K={r.Terminals,-4} {r.Mode,-22} {r.SessionsPerSecond,8:0.0}/s  p50 {r.P50Ms,7:0.0} ms  p99 {r.P99Ms,7:0.0} ms  errors {r.Errors}  home RSS {r.HomeRssMb:0} MB  home CPU {r.HomeCpuMsPerSession:0.00} ms/session  generator CPU {r.GeneratorCpuMsPerSession:0.00} ms/session  nginx CPU {r.MarketCpuMsPerSession:0.00} ms/session{Garbage(r)}{(r.FirstError is null ? "" : "  first error: " + r.FirstError)}"));
        // Warm-up, not measured: every terminal runs each mode once (JIT and caches on both sides), and
        // SslStream proves it makes full handshakes (nginx reports reused=.) and loads its TLS library.
        // Sixteen terminals at a time; a failure here is counted and reported, the measured rows count their own.
        // --warm-ups N repeats it, and --warm-up-only stops after it: a run that only looks for failures under many terminals.
        var warmUp = new LoadRunner.Tally();
        var warmUps = int.Parse(Option(args, "--warm-ups", "1"), CultureInfo.InvariantCulture);
        using (var gate = new SemaphoreSlim(16))
        {
            for (var round = 0; round < warmUps; round++)
            {
                await Task.WhenAll(rig.Terminals.Select(async t =>
                {
                    await gate.WaitAsync();
                    try
                    {
                        foreach (var mode in new[] { LoadMode.Handoff, LoadMode.Relay, LoadMode.Assist, LoadMode.ResumeHit }) await warmUp.TimeAsync(() => t.SessionAsync(mode, CancellationToken.None));
                        // The relay's data path too (the open-loop rows send a GET through it; the direct peer is warmed likewise below).
                        await warmUp.TimeAsync(() => t.SessionWithRequestAsync(LoadMode.Relay, CancellationToken.None));
                    }
                    finally
                    {
                        gate.Release();
                    }
                }));
            }
        }
        Console.WriteLine($"  warm-up: {warmUp.Count} sessions, {warmUp.Errors} errors{(warmUp.FirstError is null ? "" : " (first: " + warmUp.FirstError + ")")}");
        var steadySeconds = int.Parse(Option(args, "--warm-up-seconds", quick ? "1" : "3"), CultureInfo.InvariantCulture);
        var steadyFailures = 0;
        if (steadySeconds > 0 && !args.Contains("--warm-up-only"))
        {
            var steady = await SteadyWarmUpAsync(rig, TimeSpan.FromSeconds(steadySeconds));
            steadyFailures = steady.Sum(r => r.Errors);
            var firstError = steady.Select(r => r.FirstError).FirstOrDefault(e => e is not null);
            Console.WriteLine($"  steady warm-up: every measured path {steadySeconds} s at K = {Math.Min(10, rig.Terminals.Count)}, {steady.Sum(r => r.Sessions)} sessions, {steadyFailures} errors{(firstError is null ? "" : " (first: " + firstError + ")")}");
        }
        foreach (var line in rig.ServerOutput.Split('\n').Where(l => l.Contains("control channel broke", StringComparison.Ordinal) || l.Contains("psk_ke", StringComparison.Ordinal))) Console.WriteLine("  home server: " + line.Trim());
        if (steadyFailures > 0) return 3;
        if (args.Contains("--warm-up-only")) return warmUp.Errors == 0 ? 0 : 3;
        if (Option(args, "--only", "") is { Length: > 0 } only)
        {
            // --alloc-types: which types the home server's garbage is made of over these rows (sampled).
            await using var allocations = args.Contains("--alloc-types") ? new AllocationSampler(rig.Home.Pid) : null;
            var exit = await OnlyAsync(rig, counts, only, duration, Print, Measured);
            if (allocations is not null)
            {
                Console.WriteLine("  the home server's allocations by type (sampled every ~100 KB):");
                foreach (var line in allocations.Top(30)) Console.WriteLine("    " + line);
                Console.WriteLine("  the exceptions the home server threw over these rows (first-chance, caught or not):");
                foreach (var line in allocations.TopExceptions(25)) Console.WriteLine("    " + line);
            }
            return exit;
        }
        await SslStreamPeer.RequireFullHandshakesAsync(rig.Pki, rig.Nginx.Port);
        await LoadPeers.DirectWithRequest(rig.Pki, rig.Nginx.Port)(0);
        foreach (var k in counts)
        {
            var terminals = rig.Terminals.Take(k).ToList();
            // A warm cache handed out: tickets fetched ahead (not timed; a prefetch asks for at most 8), then
            // each terminal resumes with them; in rounds until enough sessions were timed.
            const int warm = WarmTickets;
            var rounds = WarmRounds(k, quick);
            runs.Add(await LoadRunner.CountedAsync("resume-hit", terminals, warm, rounds, rig.Home, t => t.WarmAsync(warm, CancellationToken.None),
                t => t.SessionAsync(LoadMode.ResumeHit, CancellationToken.None)));
            Print(runs[^1]);
            // The home server's part of it alone: each terminal asks for a ticket from the warm cache and gets
            // it, without resuming with the market (that is the terminal's and the market's work).
            runs.Add(await LoadRunner.CountedAsync("resume-hit-handout", terminals, warm, rounds, rig.Home, t => t.WarmAsync(warm, CancellationToken.None),
                t => t.TicketAsync(CancellationToken.None)));
            Print(runs[^1]);
            // Sustained: tickets are single use, so the home server refills in the background as they go.
            runs.Add(await Measured(() => LoadRunner.ClosedAsync("resume-hit-refilled", terminals, duration, rig.Home, t => t.SessionAsync(LoadMode.ResumeHit, CancellationToken.None))));
            Print(runs[^1]);
            // Every session needs a full handshake at the home server: each asks for a fresh ticket (as a
            // terminal does after a market refused one), which the cache never answers; closed loop.
            runs.Add(await Measured(() => LoadRunner.ClosedAsync("resume-miss", terminals, duration, rig.Home, t => t.SessionAsync(LoadMode.ResumeMiss, CancellationToken.None))));
            Print(runs[^1]);
            // Its home-server part alone: the full handshake at the home server and the first ticket handed
            // out, without the terminal's resumption with the market.
            runs.Add(await Measured(() => LoadRunner.ClosedAsync("resume-miss-handout", terminals, duration, rig.Home, t => t.TicketAsync(CancellationToken.None, fresh: true))));
            Print(runs[^1]);
            foreach (var (name, mode) in new[] { ("handoff", LoadMode.Handoff), ("relay", LoadMode.Relay), ("assist", LoadMode.Assist) })
            {
                runs.Add(await Measured(() => LoadRunner.ClosedAsync(name, terminals, duration, rig.Home, t => t.SessionAsync(mode, CancellationToken.None))));
                Print(runs[^1]);
            }
            var openssl = await LoadPeers.OpensslAsync(rig.Pki, rig.Nginx, k, seconds);
            var sslStream = await LoadPeers.SslStreamAsync(rig.Pki, rig.Nginx.Port, k, duration, rig.Home);
            peers.Add(new LoadReport.Peer(k, openssl, sslStream.SessionsPerSecond, sslStream.P50Ms, sslStream.P99Ms, sslStream.Errors));
            PrintPeer(k, openssl, sslStream);
            // The full handshake against s_time once more, in alternating slices: the ratio that both sides met alike.
            alternated.Add(await LoadAlternation.RunAsync(rig, terminals, AlternationRounds(quick), AlternationSeconds(quick)));
            Console.WriteLine(LoadAlternation.Line(alternated[^1]));
        }

        // Open loop at half the relay's measured capacity, relay and direct at the same rate.
        var openK = counts.Where(k => k <= 100).Max();
        // The capacity is the same work closed loop: a relayed session with a GET through it.
        var openTerminals = rig.Terminals.Take(openK).ToList();
        runs.Add(await Measured(() => LoadRunner.ClosedAsync("relay-get", openTerminals, duration, rig.Home, t => t.SessionWithRequestAsync(LoadMode.Relay, CancellationToken.None))));
        Print(runs[^1]);
        var capacity = runs[^1].SessionsPerSecond;
        var rate = Math.Max(1, capacity / 2);
        var (relayOpen, directOpen) = await OpenPairAsync(rig, openTerminals, rate, duration);
        Print(relayOpen);
        Print(directOpen);

        var report = LoadReport.Render(runs, peers, relayOpen, directOpen, rate, loadBefore, ProcessSampler.LoadAverage(), seconds,
            ProcessSampler.StealPercent(machineBefore, ProcessSampler.MachineCpu()), alternated);
        var stem = quick ? "load-quick" : "load";
        await File.WriteAllTextAsync(Path.Combine(output, stem + ".md"), report.Markdown);
        await File.WriteAllTextAsync(Path.Combine(output, stem + ".json"), report.Json);
        await File.WriteAllTextAsync(Path.Combine(output, stem + ".svg"), report.Svg);
        Console.WriteLine(report.Markdown);
        return runs.Sum(r => r.Errors) + relayOpen.Errors + directOpen.Errors + alternated.Sum(a => a.Errors) == 0 ? 0 : 3;
    }

    /// <summary>Rounds of handoff, s_time and resume-miss-handout slices at each K, and a slice's seconds.</summary>
    private static int AlternationRounds(bool quick) => quick ? 1 : 3;

    private static int AlternationSeconds(bool quick) => quick ? 2 : 4;

    /// <summary>
    /// <c>--only handoff|resume-hit|...</c>: that mode alone, closed loop (resume-hit from a warm cache in
    /// rounds) for each K, printed and not written: a steady run to profile the home server under.
    /// </summary>
    private static async Task<int> OnlyAsync(LoadRig rig, List<int> counts, string only, TimeSpan duration, Action<LoadRun> print, Func<Func<Task<LoadRun>>, Task<LoadRun>> measured)
    {
        var errors = 0;
        foreach (var k in counts)
        {
            var terminals = rig.Terminals.Take(k).ToList();
            if (only == "openssl")
            {
                // The s_time peer alone (it has no row of its own: printed as the full run prints it).
                PrintPeer(k, await LoadPeers.OpensslAsync(rig.Pki, rig.Nginx, k, (int)duration.TotalSeconds), null);
                continue;
            }
            if (only == "alternating")
            {
                // The full handshake against s_time in alternating slices (as the full run ends each K with).
                var alternated = await LoadAlternation.RunAsync(rig, terminals, AlternationRounds(quick: false), (int)duration.TotalSeconds);
                Console.WriteLine(LoadAlternation.Line(alternated));
                errors += alternated.Errors;
                continue;
            }
            if (only == "relay-open")
            {
                // The open-loop pair alone: relay capacity closed loop (a session with a GET), then relay and direct at half of it.
                await LoadPeers.DirectWithRequest(rig.Pki, rig.Nginx.Port)(0);
                var capacity = await measured(() => LoadRunner.ClosedAsync("relay-get", terminals, duration, rig.Home, t => t.SessionWithRequestAsync(LoadMode.Relay, CancellationToken.None)));
                print(capacity);
                var rate = Math.Max(1, capacity.SessionsPerSecond / 2);
                var (relayOpen, directOpen) = await OpenPairAsync(rig, terminals, rate, duration);
                print(relayOpen);
                print(directOpen);
                errors += relayOpen.Errors + directOpen.Errors;
                continue;
            }
            var acceptedBefore = await rig.Nginx.AcceptedAsync();
            var run = only switch
            {
                "resume-hit" => await LoadRunner.CountedAsync(only, terminals, WarmTickets, WarmRounds(terminals.Count, quick: false), rig.Home,
                    t => t.WarmAsync(WarmTickets, CancellationToken.None), t => t.SessionAsync(LoadMode.ResumeHit, CancellationToken.None)),
                "resume-hit-handout" => await LoadRunner.CountedAsync(only, terminals, WarmTickets, WarmRounds(terminals.Count, quick: false), rig.Home,
                    t => t.WarmAsync(WarmTickets, CancellationToken.None), t => t.TicketAsync(CancellationToken.None)),
                "resume-miss" => await measured(() => LoadRunner.ClosedAsync(only, terminals, duration, rig.Home, t => t.SessionAsync(LoadMode.ResumeMiss, CancellationToken.None))),
                "resume-miss-handout" => await measured(() => LoadRunner.ClosedAsync(only, terminals, duration, rig.Home, t => t.TicketAsync(CancellationToken.None, fresh: true))),
                "handoff" => await measured(() => LoadRunner.ClosedAsync(only, terminals, duration, rig.Home, t => t.SessionAsync(LoadMode.Handoff, CancellationToken.None))),
                "relay" => await measured(() => LoadRunner.ClosedAsync(only, terminals, duration, rig.Home, t => t.SessionAsync(LoadMode.Relay, CancellationToken.None))),
                "assist" => await measured(() => LoadRunner.ClosedAsync(only, terminals, duration, rig.Home, t => t.SessionAsync(LoadMode.Assist, CancellationToken.None))),
                _ => throw new ArgumentException($"--only takes openssl, alternating, relay-open, resume-hit, resume-hit-handout, resume-miss, resume-miss-handout, handoff, relay or assist, not '{only}'"),
            };
            print(run);
            // Connections the market took over the row, untimed parts included (a warm cache's fill, a status request):
            // a delegated session is one, and a resume another.
            var accepted = await rig.Nginx.AcceptedAsync() - acceptedBefore - 1;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"         nginx accepted {accepted} connection(s) over the row, for {run.Sessions} session(s)"));
            errors += run.Errors;
        }
        return errors == 0 ? 0 : 3;
    }

    /// <summary>Tickets a terminal's warm cache holds at the start of a round (a prefetch asks for at most 8).</summary>
    private const int WarmTickets = 8;

    /// <summary>
    /// Rounds of a warm cache handed out at K terminals: enough that about 2,400 sessions are timed
    /// (400 with --quick), at least two. A round of one terminal lasts a few milliseconds, so fewer would
    /// leave a row to a single collection or scheduling stall of the shared machine.
    /// </summary>
    private static int WarmRounds(int terminals, bool quick) =>
        Math.Clamp((int)Math.Ceiling((quick ? 400.0 : 2400.0) / (WarmTickets * terminals)), 2, 300);

    private static void PrintPeer(int k, LoadPeers.OpensslPeer openssl, LoadRun? sslStream)
    {
        var inv = CultureInfo.InvariantCulture;
        var sslStreamRate = sslStream is null ? "" : string.Create(inv, $"; SslStream {sslStream.SessionsPerSecond:0.0}/s");
        Console.WriteLine(string.Create(inv,
            $"  K={k,-4} openssl s_time -new {openssl.PerSecond:0.0}/s over {openssl.WindowSeconds:0.0} s with all {k} running (its own counts summed: {openssl.SummedPerSecond:0.0}/s; {openssl.CpuMsPerHandshake:0.00} ms user CPU a handshake, nginx {openssl.NginxCpuMsPerHandshake:0.00} ms CPU a handshake, {openssl.Failed} failed){sslStreamRate}"));
    }

    /// <summary>
    /// Not measured: each measured path closed loop for <paramref name="each"/> at up to ten terminals, after
    /// the once-a-terminal warm-up, and the .NET peers likewise. A home server runs for days, its hot paths
    /// compiled by the JIT's optimizing tier; seconds after its start they are not yet, nor are the
    /// generator's. Without this, the first rows (K = 1) read 0.4–0.7× what the same rows read a minute
    /// later in the same process.
    /// </summary>
    private static async Task<LoadRun[]> SteadyWarmUpAsync(LoadRig rig, TimeSpan each)
    {
        var terminals = rig.Terminals.Take(10).ToList();
        // A warm cache's round (a prefetch of 8 and 8 hand-outs) takes about a fifth of a second at K = 10.
        var rounds = Math.Max(2, (int)(each.TotalSeconds * 5));
        return
        [
            await LoadRunner.CountedAsync("warm", terminals, 8, rounds, rig.Home, t => t.WarmAsync(8, CancellationToken.None), t => t.TicketAsync(CancellationToken.None)),
            await LoadRunner.CountedAsync("warm", terminals, 8, rounds, rig.Home, t => t.WarmAsync(8, CancellationToken.None), t => t.SessionAsync(LoadMode.ResumeHit, CancellationToken.None)),
            await LoadRunner.ClosedAsync("warm", terminals, each, rig.Home, t => t.SessionAsync(LoadMode.ResumeHit, CancellationToken.None)),
            await LoadRunner.ClosedAsync("warm", terminals, each, rig.Home, t => t.SessionAsync(LoadMode.ResumeMiss, CancellationToken.None)),
            await LoadRunner.ClosedAsync("warm", terminals, each, rig.Home, t => t.TicketAsync(CancellationToken.None, fresh: true)),
            await LoadRunner.ClosedAsync("warm", terminals, each, rig.Home, t => t.SessionAsync(LoadMode.Handoff, CancellationToken.None)),
            await LoadRunner.ClosedAsync("warm", terminals, each, rig.Home, t => t.SessionAsync(LoadMode.Relay, CancellationToken.None)),
            await LoadRunner.ClosedAsync("warm", terminals, each, rig.Home, t => t.SessionAsync(LoadMode.Assist, CancellationToken.None)),
            await LoadRunner.ClosedAsync("warm", terminals, each, rig.Home, t => t.SessionWithRequestAsync(LoadMode.Relay, CancellationToken.None)),
            // The .NET peers beside the rows run the same JIT: SslStream's full handshakes, and the open loop's direct connections.
            await LoadPeers.SslStreamAsync(rig.Pki, rig.Nginx.Port, terminals.Count, each, rig.Home),
            await LoadRunner.ClosedAsync("warm", Enumerable.Range(0, terminals.Count).ToList(), each, rig.Home, LoadPeers.DirectWithRequest(rig.Pki, rig.Nginx.Port)),
        ];
    }

    /// <summary>
    /// Relay through the home server and direct Daiko.Tls connections, open loop at the same rate, taking
    /// turns in 1 s slices for three times the row's length each: a p99 on this shared machine moves with
    /// its stalls, and both ways meet the same ones.
    /// </summary>
    private static Task<(LoadRun Relay, LoadRun Direct)> OpenPairAsync(LoadRig rig, IReadOnlyList<LoadTerminal> terminals, double rate, TimeSpan duration)
    {
        var slices = Math.Max(1, (int)Math.Round(duration.TotalSeconds * 3));
        return LoadRunner.OpenAlternatingAsync(
            ("relay open-loop", terminals, t => t.SessionWithRequestAsync(LoadMode.Relay, CancellationToken.None)),
            ("direct open-loop", Enumerable.Range(0, terminals.Count).ToList(), LoadPeers.DirectWithRequest(rig.Pki, rig.Nginx.Port)),
            rate, duration * 3, slices, rig.Home);
    }

    /// <summary>Every <c>--home-env NAME=VALUE</c>: variables for the home server's environment only (a runtime setting to compare).</summary>
    internal static Dictionary<string, string> HomeEnvironment(string[] args) =>
        args.Select((a, i) => (a, i)).Where(p => p.a == "--home-env" && p.i + 1 < args.Length).Select(p => args[p.i + 1].Split('=', 2))
            .ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : "", StringComparer.Ordinal);

    internal static string Option(string[] args, string name, string fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }
}
