using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Daiko.Bench.TerminalCost;
using Daiko.Home.Hosting;
using Daiko.Home.Storage;
using Daiko.Money;
using Daiko.Protocol.Messages;
using Daiko.Protocol;

namespace Daiko.Bench.Load;

/// <summary>
/// <c>load --soak [--terminals 200] [--sessions 50] [--minutes 30] [--warm-up N] [--home-env NAME=VALUE]...
/// [--quick] [--out DIR]</c>: every terminal runs its sessions in turn through resume, handoff, relay,
/// assist and a payment, all terminals at once, against one home server process. Counts failures,
/// checks the purse paid each payment exactly once, and samples the home server every 250 ms (RSS split
/// into anonymous and file-backed pages, threads, and its runtime's GC heap, committed GC memory and
/// methods jitted): flat when the mean of the last tenth of the samples is within ±10 % of the first
/// tenth's. <c>--warm-up N</c> (25 by default, 0 with --quick) first runs N sessions a terminal the same way (sampled and counted too):
/// the report then gives the figure from the first session and the figure after the warm-up.
/// <c>--home-env</c> adds a variable to the home server's environment (a GC setting to compare).
/// Stops by itself after --minutes.
/// </summary>
public static class LoadSoak
{
    private const long Fill = 10_000_000;

    /// <summary>A refill of <paramref name="amount"/> JPY signed by <paramref name="bank"/> (declared as the payee "bank") into the card behind <paramref name="control"/>.</summary>
    public static async Task FillAsync(ControlConnection control, ECDsa bank, string refillId, long amount)
    {
        var cardId = (await control.RequestAsync<WalletBalanceReply>(new WalletBalanceRequest(), CancellationToken.None)).CardId;
        await control.RequestAsync<WalletRefillAckReply>(new WalletRefillRequest(new Refill("bank", cardId, refillId, amount, "JPY", DateTimeOffset.UtcNow.AddHours(1)).Sign(bank)), CancellationToken.None);
    }

    public static async Task<int> RunAsync(string[] args)
    {
        var quick = args.Contains("--quick");
        var count = int.Parse(LoadBenchmark.Option(args, "--terminals", quick ? "10" : "200"), CultureInfo.InvariantCulture);
        var sessions = int.Parse(LoadBenchmark.Option(args, "--sessions", quick ? "5" : "50"), CultureInfo.InvariantCulture);
        var minutes = double.Parse(LoadBenchmark.Option(args, "--minutes", "30"), CultureInfo.InvariantCulture);
        // By default the full soak first warms the server with 25 sessions a terminal (a quarter of a minute:
        // JIT, pools and GC budgets sizing themselves to 200 terminals), sampled and reported beside the run.
        var warmUp = int.Parse(LoadBenchmark.Option(args, "--warm-up", quick ? "0" : "25"), CultureInfo.InvariantCulture);
        var homeEnvironment = LoadBenchmark.HomeEnvironment(args);
        var output = LoadBenchmark.Option(args, "--out", Path.Combine(TerminalCostBenchmark.FindRepoRoot(), "bench", "results"));
        Directory.CreateDirectory(output);
        var loadBefore = ProcessSampler.LoadAverage();
        using var market = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var bank = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        await using var rig = await LoadRig.StartAsync(count, "daiko-bench-soak", async home =>
        {
            await HomeServer.AddPayeeAsync(home, "market", PayeeRole.Market, market);
            await HomeServer.AddPayeeAsync(home, "bank", PayeeRole.Bank, bank);
        }, homeEnvironment);
        var first = rig.Terminals[0].Control;
        await FillAsync(first, bank, "soak-fill", Fill);

        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(minutes));
        using var sampling = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
        await using var runtime = RuntimeCounters.TryStart(rig.Home.Pid);
        var samples = new List<SoakSample>();
        var warmUpSamples = warmUp > 0 ? -1 : 0;
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                var (anonymous, file) = rig.Home.RssSplitMb();
                lock (samples)
                {
                    samples.Add(new SoakSample(rig.Home.RssMb(), anonymous, file, rig.Home.Threads(), runtime?.Latest("gc-heap-size") ?? double.NaN,
                        runtime?.Latest("gc-committed") ?? double.NaN, (runtime?.Latest("gen-2-size") ?? double.NaN) / 1048576, runtime?.Latest("gc-fragmentation") ?? double.NaN,
                        runtime?.Latest("methods-jitted-count") ?? double.NaN));
                }
                try
                {
                    await Task.Delay(250, sampling.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        });
        var tally = new LoadRunner.Tally();
        var paid = new System.Collections.Concurrent.ConcurrentDictionary<string, string>();
        var unanswered = new System.Collections.Concurrent.ConcurrentBag<(LoadTerminal Terminal, byte[] Request)>();
        var modes = new[] { LoadMode.ResumeHit, LoadMode.Handoff, LoadMode.Relay, LoadMode.Assist, LoadMode.Pay };
        // Each session's latency by its mode too: where the run's p99 comes from.
        var byMode = modes.ToDictionary(m => m, _ => new LoadRunner.Tally());
        var clock = Stopwatch.StartNew();
        Task Sessions(int from, int to) => Task.WhenAll(rig.Terminals.Select((t, index) => Task.Run(async () =>
        {
            for (var i = from; i < to && !stop.IsCancellationRequested; i++)
            {
                var mode = modes[(i + index) % modes.Length];
                if (mode == LoadMode.Pay)
                {
                    var request = t.PaymentRequest(market, "market");
                    if (!await tally.TimeAsync(() => byMode[mode].TimeAsync(async () => paid[MoneyMessage.Hash(request)] = await t.PayAsync(request, stop.Token), rethrow: true))) unanswered.Add((t, request));
                }
                else
                {
                    await tally.TimeAsync(() => byMode[mode].TimeAsync(() => t.SessionAsync(mode, stop.Token), rethrow: true));
                }
            }
        })));
        if (warmUp > 0)
        {
            await Sessions(0, warmUp);
            lock (samples) warmUpSamples = samples.Count;
            Console.WriteLine($"soak: warm-up of {warmUp} sessions a terminal done in {clock.Elapsed.TotalSeconds:0.0} s, {tally.Errors} failures");
        }
        await Sessions(warmUp, warmUp + sessions);
        var elapsed = clock.Elapsed.TotalSeconds;
        var stoppedByTime = stop.IsCancellationRequested;
        await sampling.CancelAsync();
        await sampler;

        // A payment whose answer did not come back is sent again, as a terminal would: the same request
        // gets the first answer if it was paid (it still counts as a failure above).
        foreach (var (terminal, request) in unanswered) paid.TryAdd(MoneyMessage.Hash(request), await terminal.PayAsync(request, CancellationToken.None));
        var payments = paid.Count;
        var balance = (await first.RequestAsync<WalletBalanceReply>(new WalletBalanceRequest(), CancellationToken.None)).Balances.Single(b => b.Currency == "JPY").Amount;
        var memory = new SoakMemory(samples, warmUpSamples);
        var serverFailures = rig.ServerOutput.Split('\n').Where(l => l.Contains("fail", StringComparison.OrdinalIgnoreCase) || l.Contains("broke", StringComparison.Ordinal) || l.Contains("exception", StringComparison.OrdinalIgnoreCase)).Take(40).ToList();
        var balanceOk = balance == Fill - payments;
        var (p50, p99) = tally.Percentiles();
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine("# Soak: the home server under a long mixed load");
        md.AppendLine();
        md.AppendLine(string.Create(inv, $"{count} terminals × {sessions} sessions each{(warmUp > 0 ? $" after a warm-up of {warmUp}" : "")}, all at once, each terminal cycling through resume, handoff, relay, assist and a payment (one home server process, nginx requiring client certificates, home card on SoftHSM2; {Environment.ProcessorCount} shared cores, load average {loadBefore} before, {ProcessSampler.LoadAverage()} after){(homeEnvironment.Count > 0 ? "; home server environment: " + string.Join(' ', homeEnvironment.Select(kv => $"{kv.Key}={kv.Value}")) : "")}."));
        md.AppendLine();
        md.AppendLine(string.Create(inv, $"- sessions and payments: {tally.Count + tally.Errors}, failures: {tally.Errors}{(tally.FirstError is null ? "" : $" (first: {tally.FirstError})")}{(stoppedByTime ? $"; STOPPED after {minutes} min" : "")}"));
        md.AppendLine(string.Create(inv, $"- {elapsed:0.0} s in all, {tally.Count / elapsed:0.0} per second; latency p50 {p50:0.0} ms, p99 {p99:0.0} ms"));
        md.AppendLine("- by mode, p50 / p99 ms: " + string.Join(", ", byMode.Select(kv =>
        {
            var (m50, m99) = kv.Value.Percentiles();
            return string.Create(inv, $"{kv.Key.ToString().ToLowerInvariant()} {m50:0.0} / {m99:0.0}");
        })));
        md.AppendLine(string.Create(inv, $"- payments: {payments} distinct requests paid ({unanswered.Count} of them failed at the terminal and were sent again afterwards as the same request); the purse's balance moved by exactly that: {(balanceOk ? "yes" : $"NO (balance {balance})")}"));
        md.Append(memory.Markdown(warmUp));
        if (serverFailures.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("The home server's log lines about failures:");
            md.AppendLine();
            foreach (var line in serverFailures) md.AppendLine("    " + line.Trim());
        }
        var json = JsonSerializer.Serialize(new
        {
            terminals = count, sessions_per_terminal = sessions, sessions = tally.Count + tally.Errors, failures = tally.Errors, payments, payments_resent = unanswered.Count, balance_ok = balanceOk,
            seconds = Math.Round(elapsed, 1), p50_ms = Math.Round(p50, 1), p99_ms = Math.Round(p99, 1), stopped_by_time = stoppedByTime,
            warm_up_sessions_per_terminal = warmUp, home_environment = homeEnvironment, memory = memory.Json(),
            load_average = loadBefore,
        }, new JsonSerializerOptions { WriteIndented = true });
        var stem = quick ? "soak-quick" : "soak";
        // What was written by hand below the generated report (from a line "## Findings" on) is kept.
        var path = Path.Combine(output, stem + ".md");
        var kept = File.Exists(path) ? await File.ReadAllTextAsync(path) : "";
        var findings = kept.IndexOf("\n## Findings", StringComparison.Ordinal);
        if (findings >= 0) md.AppendLine().Append(kept[(findings + 1)..]);
        await File.WriteAllTextAsync(path, md.ToString());
        await File.WriteAllTextAsync(Path.Combine(output, stem + ".json"), json);
        Console.WriteLine(md);
        return tally.Errors == 0 && balanceOk && !stoppedByTime ? 0 : 3;
    }
}
