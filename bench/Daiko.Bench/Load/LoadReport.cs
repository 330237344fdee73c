using System.Globalization;
using System.Text;
using System.Text.Json;
using Daiko.Bench.Reporting;

namespace Daiko.Bench.Load;

/// <summary>load.md, load.json and load.svg from one run.</summary>
public static class LoadReport
{
    public sealed record Peer(int Terminals, LoadPeers.OpensslPeer Openssl, double SslStreamPerSecond, double SslStreamP50Ms, double SslStreamP99Ms, int SslStreamErrors)
    {
        /// <summary>s_time's handshakes a second while all K ran (nginx's count over the window): the rate the rows are compared with.</summary>
        public double OpensslPerSecond => Openssl.PerSecond;
    }

    public sealed record Rendered(string Markdown, string Json, string Svg);

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <param name="stealPercent">the share of the machine's CPU time the hypervisor gave to other guests during the run.</param>
    public static Rendered Render(IReadOnlyList<LoadRun> runs, IReadOnlyList<Peer> peers, LoadRun relayOpen, LoadRun directOpen, double rate, string loadBefore, string loadAfter, int seconds, double stealPercent = double.NaN,
        IReadOnlyList<LoadAlternation.Alternated>? alternated = null)
    {
        alternated ??= [];
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine("# The home server under load");
        md.AppendLine();
        md.AppendLine(string.Create(inv, $"One load-generator process drives K simulated terminals, each with its own enrolled device key, its own control channel and its own session with the home card (SoftHSM2), against a real `daiko home serve` process and nginx requiring client certificates, all on this {Environment.ProcessorCount}-core machine, shared with other work (load average {loadBefore} before, {loadAfter} after; CPU time taken by the hypervisor for other guests during the run: {(double.IsNaN(stealPercent) ? "unknown" : stealPercent.ToString("0.0", inv) + " %")}): compare ratios within this run, not absolute numbers across runs. A session is a delegated connection established for the terminal, then closed. Closed loop, {seconds} s per row unless stated. Before the rows, not measured: every terminal runs each mode once, then each measured path, and the SslStream and direct peers, run a few seconds at K = 10, so that the rows meet the home server (and the generator) with their hot code compiled by the JIT's optimizing tier, as a server that has run for a while has it."));
        md.AppendLine();
        md.AppendLine("- resume-hit: tickets fetched ahead into the home cache (not timed), then handed out; each terminal resumes with them (psk_dhe_ke, the terminal's default): a warm cache handed out and used, end to end. In rounds: 8 tickets a terminal fetched ahead, then handed out; about 2,400 sessions timed a row (at least two rounds; K = 1 takes 300 rounds). Until 2026-12-06 a row timed 400–1,600 sessions (80 at K = 1, a few tens of milliseconds) and moved with single stalls of the shared machine.");
        md.AppendLine("- resume-hit-handout: the same warm cache, the home server's part alone: each terminal asks for a ticket and gets it, and does not resume with the market (that is the terminal's and the market's work, in the row above): the rate of handing out a warm cache.");
        md.AppendLine("- resume-hit-refilled: resume sessions back to back; tickets are single use, so the home server refills in the background (the sustained rate).");
        md.AppendLine("- resume-miss: a cache miss every session. Each asks with `fresh` set (the flag a terminal sets after a market refused a ticket; here only the way to make a miss: the home server drops what it holds for the device and market and never answers from its cache; no refused attempt is part of the row), so every session waits for a full handshake at the home server (and is then the terminal's resumption with the market); closed loop. Until 2026-12-05 misses were made by locking and unlocking every terminal between rounds of K sessions at once, a round lasting as long as its slowest session: rows before that date read lower for it and are not comparable.");
        md.AppendLine("- resume-miss-handout: the same, the home server's part alone: its full handshake and the first ticket handed out, without the terminal's resumption.");
        md.AppendLine("- relay-get (K = 100 only): a relayed session with a GET of /whoami through it, closed loop: the capacity the open-loop rate below is half of.");
        md.AppendLine("- handoff, relay, assist: the full handshake at the home server (card signs), then the keys handed over, the connection relayed, or the terminal's own handshake with the home card's signature and chain verdict.");
        md.AppendLine(string.Create(inv, $"- the market (nginx) gives 60 s tickets: every ticket handed to a device counts against its policy's limit until it expires; one device takes thousands in a run, so the load's devices may hold {LoadTerminal.MaxTickets:N0}."));
        md.AppendLine("- generator CPU: the load generator's own user+system CPU over the same timed part, per session (all K simulated terminals' TLS and control channels; it shares the cores with the home server and nginx).");
        md.AppendLine("- nginx CPU: the market's own user+system CPU over the same timed part, per session (nginx runs one process, no master, one worker: a core at most). A whole miss costs nginx a full handshake and the terminal's resumption; an s_time connection one full handshake (its peer column below).");
        md.AppendLine("- home alloc: what the home server's runtime allocated per session (its `alloc-rate` counter over the row, which includes a second or two of the idle server), closed-loop rows only: the garbage a session leaves for the collector.");
        md.AppendLine();
        md.AppendLine("| K | mode | sessions/s | p50 ms | p99 ms | errors | home RSS MB | home CPU ms/session | home alloc KB/session | generator CPU ms/session | nginx CPU ms/session | × openssl s_time -new at K | × SslStream at K |");
        md.AppendLine("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in runs)
        {
            var peer = peers.FirstOrDefault(p => p.Terminals == r.Terminals);
            md.AppendLine(string.Create(inv, $"| {r.Terminals} | {r.Mode} | {r.SessionsPerSecond:0.0} | {r.P50Ms:0.0} | {r.P99Ms:0.0} | {r.Errors} | {r.HomeRssMb:0} | {r.HomeCpuMsPerSession:0.00} | {(double.IsNaN(r.HomeAllocKbPerSession) ? "" : r.HomeAllocKbPerSession.ToString("0", inv))} | {r.GeneratorCpuMsPerSession:0.00} | {r.MarketCpuMsPerSession:0.00} | {r.SessionsPerSecond / (peer?.OpensslPerSecond ?? double.NaN):0.00} | {r.SessionsPerSecond / (peer?.SslStreamPerSecond ?? double.NaN):0.00} |"));
        }
        md.AppendLine();
        md.AppendLine("Peers at the same K, same nginx, same run (software key, full handshakes):");
        md.AppendLine();
        md.AppendLine("| K | openssl s_time -new, /s with all K running | over s | its own counts summed, /s | its user CPU ms a handshake | nginx CPU ms a handshake | s_time failed | SslStream, resumption off, /s | SslStream p50 / p99 ms | SslStream errors |");
        md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var p in peers)
        {
            md.AppendLine(string.Create(inv, $"| {p.Terminals} | {p.OpensslPerSecond:0.0} | {p.Openssl.WindowSeconds:0.0} | {p.Openssl.SummedPerSecond:0.0} | {p.Openssl.CpuMsPerHandshake:0.00} | {p.Openssl.NginxCpuMsPerHandshake:0.00} | {p.Openssl.Failed} | {p.SslStreamPerSecond:0.0} | {p.SslStreamP50Ms:0.0} / {p.SslStreamP99Ms:0.0} | {p.SslStreamErrors} |"));
        }
        md.AppendLine();
        md.AppendLine("s_time's rate is counted by nginx (its stub_status \"accepts\", one connection a handshake with -new) over a window that opens a second after the last of the K processes was started and closes before the first one stops, so every one of them runs through it: K concurrent clients' wall rate, as the rows are. Each process's own count over its -time seconds, summed, is beside it: it also counts the ramps at both ends (starting 200 processes takes about a second here) as if all K ran, and so reads higher. s_time's CPU is the client's user CPU only; nginx's, over the same window per connection it accepted, is beside it.");
        md.AppendLine();
        md.AppendLine(string.Create(inv, $"Open loop at K = {relayOpen.Terminals}: a session with a GET of /whoami started every {1000 / rate:0.0} ms ({rate:0.0}/s, half the closed-loop rate of the same work, relay-get, at that K) whatever the answers, latency from each scheduled start; relay and direct take turns in 1 s slices, {relayOpen.Seconds:0} s each, so that both meet the same moments of the shared machine:"));
        md.AppendLine();
        md.AppendLine("| way | requests | p50 ms | p99 ms | errors |");
        md.AppendLine("|---|---:|---:|---:|---:|");
        md.AppendLine(string.Create(inv, $"| relay through the home server | {relayOpen.Sessions} | {relayOpen.P50Ms:0.0} | {relayOpen.P99Ms:0.0} | {relayOpen.Errors} |"));
        md.AppendLine(string.Create(inv, $"| direct Daiko.Tls, software key | {directOpen.Sessions} | {directOpen.P50Ms:0.0} | {directOpen.P99Ms:0.0} | {directOpen.Errors} |"));
        md.AppendLine();
        md.AppendLine(string.Create(inv, $"Relay p99 {relayOpen.P99Ms:0.0} ms against direct {directOpen.P99Ms:0.0} ms: added {relayOpen.P99Ms - directOpen.P99Ms:0.0} ms, {relayOpen.P99Ms / directOpen.P99Ms:0.00}× the direct p99."));
        foreach (var r in runs.Where(r => r.FirstError is not null)) md.AppendLine($"- first error of {r.Mode} at K={r.Terminals}: {r.FirstError}");
        md.AppendLine();
        if (alternated.Count > 0)
        {
            var first = alternated[0];
            md.AppendLine(string.Create(inv, $"A full handshake at the home server against s_time, alternating: at each K, after its rows and peers, {first.Rounds} rounds of a {first.SliceSeconds} s handoff slice, an s_time slice ({first.SliceSeconds} s window with all K running, as above) and a {first.SliceSeconds} s resume-miss-handout slice, so that both sides of the ratio meet the same moments of this shared machine (its speed for the same work moves by a third over minutes: compare the nginx CPU column between rows). Each rate is the slices' sessions over their seconds; each slice's own rate is in brackets, in order."));
            md.AppendLine();
            md.AppendLine("| K | handoff /s | resume-miss-handout /s | openssl s_time -new /s | handoff × s_time | resume-miss-handout × s_time | errors | s_time failed |");
            md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
            string Slices(IEnumerable<double> rates) => string.Join(" ", rates.Select(r => r.ToString("0", inv)));
            foreach (var a in alternated)
                md.AppendLine(string.Create(inv, $"| {a.Terminals} | {a.HandoffPerSecond:0.0} ({Slices(a.HandoffSlices)}) | {a.MissHandoutPerSecond:0.0} ({Slices(a.MissHandoutSlices)}) | {a.OpensslPerSecond:0.0} ({Slices(a.OpensslSlices)}) | {a.HandoffRatio:0.00} | {a.MissHandoutRatio:0.00} | {a.Errors} | {a.OpensslFailed} |"));
            md.AppendLine();
        }
        md.Append(Goals(runs, peers, relayOpen, directOpen, alternated));

        var largest = peers.OrderBy(p => p.Terminals).LastOrDefault();
        var json = JsonSerializer.Serialize(new
        {
            load_average = new { before = loadBefore, after = loadAfter },
            steal_percent = Round(stealPercent),
            runs = runs.Select(r => new
            {
                mode = r.Mode, terminals = r.Terminals, sessions_per_s = Round(r.SessionsPerSecond), p50_ms = Round(r.P50Ms), p99_ms = Round(r.P99Ms),
                errors = r.Errors, home_rss_mb = Round(r.HomeRssMb), home_cpu_ms_per_session = Round(r.HomeCpuMsPerSession), home_alloc_kb_per_session = Round(r.HomeAllocKbPerSession),
                generator_cpu_ms_per_session = Round(r.GeneratorCpuMsPerSession), nginx_cpu_ms_per_session = Round(r.MarketCpuMsPerSession), sessions = r.Sessions,
            }),
            peers = new
            {
                openssl_full_per_s = Round(largest?.OpensslPerSecond ?? double.NaN),
                openssl_terminals = largest?.Terminals ?? 0,
                sslstream_full_per_s = Round(largest?.SslStreamPerSecond ?? double.NaN),
                by_terminals = peers.Select(p => new
                {
                    terminals = p.Terminals, openssl_full_per_s = Round(p.OpensslPerSecond), openssl_window_s = Round(p.Openssl.WindowSeconds),
                    openssl_summed_per_s = Round(p.Openssl.SummedPerSecond), openssl_cpu_ms_per_handshake = Round(p.Openssl.CpuMsPerHandshake),
                    nginx_cpu_ms_per_handshake = Round(p.Openssl.NginxCpuMsPerHandshake),
                    openssl_failed = p.Openssl.Failed, sslstream_full_per_s = Round(p.SslStreamPerSecond), sslstream_errors = p.SslStreamErrors,
                }),
            },
            alternating = alternated.Select(a => new
            {
                terminals = a.Terminals, rounds = a.Rounds, slice_s = a.SliceSeconds,
                handoff_per_s = Round(a.HandoffPerSecond), resume_miss_handout_per_s = Round(a.MissHandoutPerSecond), openssl_full_per_s = Round(a.OpensslPerSecond),
                handoff_ratio = Round(a.HandoffRatio), resume_miss_handout_ratio = Round(a.MissHandoutRatio),
                handoff_slices = a.HandoffSlices.Select(Round), resume_miss_handout_slices = a.MissHandoutSlices.Select(Round), openssl_slices = a.OpensslSlices.Select(Round),
                errors = a.Errors, openssl_failed = a.OpensslFailed,
            }),
            open_loop = new
            {
                terminals = relayOpen.Terminals, rate_per_s = Round(rate),
                relay = new { p50_ms = Round(relayOpen.P50Ms), p99_ms = Round(relayOpen.P99Ms), errors = relayOpen.Errors, requests = relayOpen.Sessions },
                direct = new { p50_ms = Round(directOpen.P50Ms), p99_ms = Round(directOpen.P99Ms), errors = directOpen.Errors, requests = directOpen.Sessions },
            },
        }, Indented);

        var panels = peers.Select(p => new SvgBarChart.Panel($"K = {p.Terminals} terminals", "delegated sessions/s",
            [
                .. runs.Where(r => r.Terminals == p.Terminals).Select(r => new SvgBarChart.Bar(r.Mode, r.SessionsPerSecond, double.NaN, double.NaN)),
                new SvgBarChart.Bar("peer: openssl s_time -new", p.OpensslPerSecond, double.NaN, double.NaN),
                new SvgBarChart.Bar("peer: SslStream full", p.SslStreamPerSecond, double.NaN, double.NaN),
            ])).ToList();
        var svg = SvgBarChart.Render($"Daiko home server under load (load average {loadBefore})", panels);
        return new Rendered(md.ToString(), json, svg);
    }

    /// <summary>The issue's goals against this run's numbers, each row's ratio to s_time at its K.</summary>
    private static string Goals(IReadOnlyList<LoadRun> runs, IReadOnlyList<Peer> peers, LoadRun relayOpen, LoadRun directOpen, IReadOnlyList<LoadAlternation.Alternated> alternated)
    {
        var inv = CultureInfo.InvariantCulture;
        string Ratios(string mode, double goal)
        {
            var parts = peers.Select(p => (p.Terminals, Ratio: runs.FirstOrDefault(r => r.Mode == mode && r.Terminals == p.Terminals)?.SessionsPerSecond / p.OpensslPerSecond))
                .Where(x => x.Ratio is not null).Select(x => string.Create(inv, $"{x.Ratio:0.00}× at K = {x.Terminals}{(x.Ratio >= goal ? "" : " (missed)")}"));
            return string.Join(", ", parts);
        }
        var md = new StringBuilder();
        md.AppendLine("Goals against this run (× the rate of K concurrent `openssl s_time -new` clients, counted by nginx while all K ran):");
        md.AppendLine();
        md.AppendLine($"- a full handshake at the home server ≥ 1.0×: handoff {Ratios("handoff", 1.0)}; the home server's part of a miss (resume-miss-handout) {Ratios("resume-miss-handout", 1.0)}; a whole miss with the terminal's resumption (resume-miss) {Ratios("resume-miss", 1.0)}");
        if (alternated.Count > 0)
        {
            string Alternating(Func<LoadAlternation.Alternated, double> ratio) => string.Join(", ", alternated.Select(a =>
                string.Create(inv, $"{ratio(a):0.00}× at K = {a.Terminals}{(ratio(a) >= 1.0 ? "" : " (missed)")}")));
            md.AppendLine($"- the same, alternating with s_time in slices (both sides at the same moments of the machine): handoff {Alternating(a => a.HandoffRatio)}; resume-miss-handout {Alternating(a => a.MissHandoutRatio)}");
        }
        md.AppendLine($"- a warm cache handed out ≥ 5×: {Ratios("resume-hit-handout", 5.0)}; with each terminal's resumption with nginx (resume-hit) {Ratios("resume-hit", 5.0)}");
        md.AppendLine(string.Create(inv, $"- relay p99 open-loop ≤ 2× direct: {relayOpen.P99Ms / directOpen.P99Ms:0.00}×{(relayOpen.P99Ms <= 2 * directOpen.P99Ms ? "" : " (missed)")}"));
        if (runs.Where(r => r.Terminals == 200).Select(r => r.HomeRssMb).DefaultIfEmpty(double.NaN).Max() is var rss && !double.IsNaN(rss))
            md.AppendLine(string.Create(inv, $"- home RSS < 300 MB at K = 200: at most {rss:0} MB{(rss < 300 ? "" : " (missed)")}"));
        return md.ToString();
    }

    private static double Round(double v) => double.IsNaN(v) || double.IsInfinity(v) ? v : Math.Round(v, 2);
}
