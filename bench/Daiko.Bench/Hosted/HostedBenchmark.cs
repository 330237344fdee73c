using System.Globalization;
using System.Security.Cryptography;
using Daiko.Bench.Load;
using Daiko.Bench.TerminalCost;
using Daiko.Home.Hosting;
using Daiko.Home.Storage;
using Daiko.Host;
using Daiko.Protocol;
using Daiko.Terminal.Sessions;
using Daiko.TestSupport;
using Daiko.TestSupport.Hosted;

namespace Daiko.Bench.Hosted;

/// <summary>
/// <c>hosted [--quick] [--owners N] [--terminals N] [--seconds N] [--rounds N] [--out DIR]</c>: in one run,
/// (a) the single-owner <c>daiko home serve</c> on SQLite, (b) one <c>daiko host serve</c> node with its
/// terminals connected directly, (c) three nodes behind HAProxy — over one real PostgreSQL — each with
/// owners × terminals simulated terminals in this process (each its own enrolled device key and control
/// channel; the home server gets as many), against one nginx market requiring client certificates.
/// Measured in windows of --seconds, the setups taking turns in a rotating order for --rounds rounds so
/// that the machine's other load falls on all alike: delegated sessions (relay: a full handshake of the
/// owner's card key with the market, then the connection relayed, then closed) and payments (a market's
/// signed 1 JPY request paid from the owner's purse). Reports rates, latency, errors, each server's peak
/// RSS and CPU per operation, PostgreSQL's and HAProxy's CPU per operation.
/// </summary>
public static class HostedBenchmark
{
    private const long Fill = 100_000_000;

    public static async Task<int> RunAsync(string[] args)
    {
        var quick = args.Contains("--quick");
        var owners = Int(args, "--owners", quick ? 2 : 4);
        var perOwner = Int(args, "--terminals", quick ? 2 : 5);
        var seconds = Int(args, "--seconds", quick ? 2 : 8);
        var rounds = Int(args, "--rounds", quick ? 1 : 3);
        var output = LoadBenchmark.Option(args, "--out", Path.Combine(TerminalCostBenchmark.FindRepoRoot(), "bench", "results"));
        Directory.CreateDirectory(output);
        if (!HaproxyServer.Available || !PostgresServer.Available) throw new InvalidOperationException("the hosted benchmark needs PostgreSQL and HAProxy (scripts/install-deps.sh installs them)");
        var count = owners * perOwner;
        var loadBefore = ProcessSampler.LoadAverage();
        Console.WriteLine($"hosted: {owners} owners × {perOwner} terminals = {count} terminals a setup; load average {loadBefore}");

        using var marketKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var bankKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        await using var rig = await LoadRig.StartAsync(count, "daiko-bench-hosted", async home =>
        {
            await HomeServer.AddPayeeAsync(home, "market", PayeeRole.Market, marketKey);
            await HomeServer.AddPayeeAsync(home, "bank", PayeeRole.Bank, bankKey);
        });
        await LoadSoak.FillAsync(rig.Terminals[0].Control, bankKey, "hosted-fill", Fill);
        var home = new HostedSetup("home serve (SQLite)", rig.Terminals.Select(HomeTerminal(marketKey)).ToList(), [("home", rig.Home)]);

        var site = new HostedSite(rig.Pki);
        var fleet = new List<FleetTerminal>();
        var nodes = new List<(ExternalProcess Node, int Port)>();
        HaproxyServer? balancer = null;
        try
        {
            await site.InitializeAsync();
            var market = new MoneyParty("market");
            var bank = new MoneyParty("bank");
            var hosted = HostSite.Open(site.Site);
            await using var source = hosted.OpenDataSource(maxPool: 10);
            var database = new SiteDatabase(source);
            using (var token = hosted.OpenToken())
            {
                for (var o = 1; o <= owners; o++) await FleetOwners.AddAsync(site, database, token, o, [(market, PayeeRole.Market), (bank, PayeeRole.Bank)]);
            }
            for (var n = 0; n < 4; n++) nodes.Add(await site.StartNodeAsync());
            balancer = await HaproxyServer.StartAsync(nodes.Skip(1).Select(n => n.Port));
            byte[] spkiHash;
            using (var identity = Daiko.Home.Trust.HomeIdentity.LoadOrCreate(site.Site)) spkiHash = identity.SpkiHash;
            var work = Path.Combine(site.Dir.Path, "fleet");
            async Task<List<FleetTerminal>> EnrollAsync(string prefix, string endpoint)
            {
                var plan = Enumerable.Range(1, owners).SelectMany(o => Enumerable.Range(1, perOwner).Select(t => (Owner: o, Name: $"{prefix}-o{o:00}-t{t}"))).ToList();
                var enrolled = new List<FleetTerminal>();
                foreach (var chunk in plan.Chunk(8))
                {
                    var terminals = await Task.WhenAll(chunk.Select(p => FleetTerminal.EnrollAsync(database, spkiHash, FleetOwners.NameOf(p.Owner), p.Name, work, endpoint)));
                    await Task.WhenAll(terminals.Zip(chunk).Select(x => x.First.UnlockAsync(FleetOwners.PinsOf(x.Second.Owner).Pin1, FleetOwners.PinsOf(x.Second.Owner).Pin2)));
                    enrolled.AddRange(terminals);
                }
                fleet.AddRange(enrolled);
                return enrolled;
            }
            var direct = await EnrollAsync("one", $"127.0.0.1:{nodes[0].Port}");
            var balanced = await EnrollAsync("three", $"127.0.0.1:{balancer.Port}");
            foreach (var first in direct.GroupBy(t => t.Owner).Select(g => g.First())) await first.RefillAsync(bank, first.Owner + "-fill", Fill);
            var postgres = new ProcessSampler(site.Postgres.ProcessId);
            var one = new HostedSetup("host serve, one node", direct.Select(FleetOperation(rig, market)).ToList(), [("node 1", new ProcessSampler(nodes[0].Node.Id))], postgres);
            var three = new HostedSetup("host serve, three nodes + HAProxy", balanced.Select(FleetOperation(rig, market)).ToList(),
                nodes.Skip(1).Select((n, i) => ($"node {i + 2}", new ProcessSampler(n.Node.Id))).ToList(), postgres, new ProcessSampler(balancer.ProcessId));
            Console.WriteLine($"hosted: {owners} owners, {count} terminals on node 1 direct, {count} through HAProxy to nodes 2-4, {count} on the home server");

            var setups = new[] { home, one, three };
            foreach (var setup in setups) await setup.WarmUpAsync(quick ? 1 : 3);
            foreach (var setup in setups) await setup.MeasureIdleAsync(TimeSpan.FromSeconds(quick ? 2 : 5));
            var duration = TimeSpan.FromSeconds(seconds);
            for (var round = 0; round < rounds; round++)
            {
                // A rotating order, so that no setup always runs first (or last) in a round.
                foreach (var setup in setups.Skip(round % 3).Concat(setups.Take(round % 3)))
                {
                    foreach (var operation in Enum.GetValues<HostedOperation>())
                    {
                        await setup.MeasureAsync(operation, duration);
                        var t = setup.Results[operation];
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"  round {round + 1} {setup.Name,-34} {operation,-8} so far {t.PerSecond,7:0.0}/s  errors {t.Tally.Errors}  load {ProcessSampler.LoadAverage()}"));
                    }
                }
            }
            var loadAfter = ProcessSampler.LoadAverage();
            // What the servers logged about failures: where an error in the table is explained.
            var failures = new[] { ("home", rig.ServerOutput) }.Concat(nodes.Select((n, i) => ($"node {i + 1}", n.Node.Output)))
                .SelectMany(o =>
                {
                    var lines = o.Item2.Split('\n');
                    return lines.Select((line, i) => (line, i)).Where(x => (x.line.Contains("fail", StringComparison.OrdinalIgnoreCase) || x.line.Contains("exception", StringComparison.OrdinalIgnoreCase))
                            && !x.line.Contains("control handshake failed", StringComparison.Ordinal))
                        .Select(x => $"{o.Item1}: {x.line.Trim()} {(x.i + 1 < lines.Length ? lines[x.i + 1].Trim() : "")}");
                })
                .Take(12).ToList();
            var report = HostedReport.Render(setups, owners, perOwner, seconds, rounds, loadBefore, loadAfter, failures);
            var stem = quick ? "hosted-quick" : "hosted";
            await File.WriteAllTextAsync(Path.Combine(output, stem + ".md"), report.Markdown);
            await File.WriteAllTextAsync(Path.Combine(output, stem + ".json"), report.Json);
            Console.WriteLine(report.Markdown);
            return setups.Sum(s => s.Results.Values.Sum(r => r.Tally.Errors)) == 0 ? 0 : 3;
        }
        finally
        {
            foreach (var t in fleet) await t.DisposeAsync();
            balancer?.Dispose();
            await site.DisposeAsync();
        }
    }

    /// <summary>A home server terminal's operations: a relay session to nginx, a resumed one, or a 1 JPY payment to the payee "market".</summary>
    private static Func<LoadTerminal, Func<HostedOperation, Task>> HomeTerminal(ECDsa marketKey) => t => operation => operation switch
    {
        HostedOperation.Session => t.SessionAsync(LoadMode.Relay, CancellationToken.None),
        HostedOperation.Resume => t.SessionAsync(LoadMode.ResumeHit, CancellationToken.None),
        _ => t.PayAsync(t.PaymentRequest(marketKey, "market"), CancellationToken.None),
    };

    /// <summary>A hosted terminal's operations, the same as a home server terminal's, on its control channel (no retries: a failure counts).</summary>
    private static Func<FleetTerminal, Func<HostedOperation, Task>> FleetOperation(LoadRig rig, MoneyParty market) => t =>
    {
        var connector = new DelegatedConnector(t.Control) { TerminalRoute = (_, port) => ("127.0.0.1", port) };
        var paid = 0;
        return operation => operation switch
        {
            HostedOperation.Session => LoadTerminal.SessionAsync(connector, rig.Nginx.Port, DelegationMode.Relay, CancellationToken.None),
            HostedOperation.Resume => LoadTerminal.SessionAsync(connector, rig.Nginx.Port, DelegationMode.Resume, CancellationToken.None),
            _ => LoadTerminal.PayAsync(t.Control, market.PaymentRequest($"{t.Name}-{Interlocked.Increment(ref paid)}", 1), CancellationToken.None),
        };
    };

    private static int Int(string[] args, string name, int fallback) =>
        int.Parse(LoadBenchmark.Option(args, name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
}
