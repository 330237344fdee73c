using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Daiko.Bench.Hosted;

/// <summary>hosted.md and hosted.json from one run.</summary>
public static class HostedReport
{
    public sealed record Rendered(string Markdown, string Json);

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public static Rendered Render(IReadOnlyList<HostedSetup> setups, int owners, int perOwner, int seconds, int rounds, string loadBefore, string loadAfter, IReadOnlyList<string> serverFailures)
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine("# Hosted nodes beside the home server");
        md.AppendLine();
        md.AppendLine(string.Create(inv, $"`bench/run.sh hosted`: one load-generator process drives {owners * perOwner} simulated terminals per setup ({owners} owners × {perOwner} terminals for the hosted setups, as many for the single owner of the home server), each with its own enrolled device key, control channel and unlocked session, against one nginx market requiring client certificates. The setups run in the same run, over the same PKI and market: (a) `daiko home serve` on SQLite with its card on SoftHSM2; (b) one `daiko host serve` node, terminals connected directly; (c) three `daiko host serve` nodes behind HAProxy (round robin) — (b) and (c) over one PostgreSQL (fsync on) and the site's SoftHSM2 token. Closed loop, windows of {seconds} s, {rounds} round(s), the setups taking turns in a rotating order. All of it on this {Environment.ProcessorCount}-core machine, shared with other work: load average {loadBefore} before, {loadAfter} after."));
        md.AppendLine();
        md.AppendLine("- session: a delegated session in relay mode — the server makes a full TLS 1.3 handshake with the market, the owner's card key signing, relays the connection to the terminal, and the terminal closes it.");
        md.AppendLine("- resume: a delegated session in resume mode — the server hands the terminal a ticket from its cache (refilled in the background by full handshakes; a full handshake first when the cache is empty), counted against the device's max-tickets (in memory on the home server, in PostgreSQL on the nodes: one count for all nodes), and the terminal resumes with the market itself (psk_dhe_ke), then closes.");
        md.AppendLine("- payment: the terminal sends a market's signed payment request for 1 JPY (a payee of the owner's, allowed by the device's policy); the server's purse signs and records the payment and answers its id.");
        md.AppendLine("- CPU ms/op: CPU (user + system) of the process(es) over the windows, divided by the operations completed; the servers' column sums the nodes; PostgreSQL's counts the postmaster and all its backends; the generator is this process (the terminals' side).");
        md.AppendLine("- peak RSS: the highest resident memory seen, sampled every 100 ms during the windows, of each server process.");
        md.AppendLine();
        md.AppendLine("| setup | operation | per second | p50 ms | p99 ms | errors | server CPU ms/op | PostgreSQL CPU ms/op | HAProxy CPU ms/op | generator CPU ms/op | peak RSS MB |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (var setup in setups)
        {
            foreach (var (operation, t) in setup.Results)
            {
                var (p50, p99) = t.Tally.Percentiles();
                var rss = string.Join(", ", setup.Servers.Select((s, i) => string.Create(inv, $"{s.Name} {t.PeakRssMb[i]:0}")));
                md.AppendLine(string.Create(inv, $"| {setup.Name} | {operation.ToString().ToLowerInvariant()} | {t.PerSecond:0.0} | {p50:0.0} | {p99:0.0} | {t.Tally.Errors} | {t.MsPerOperation(t.ServerCpu.Sum()):0.00} | {Dash(t, t.DatabaseCpu)} | {Dash(t, t.BalancerCpu)} | {t.MsPerOperation(t.GeneratorCpu):0.00} | {rss} |"));
            }
        }
        md.AppendLine();
        md.AppendLine("Idle, every terminal connected and quiet (measured once after the warm-up): CPU ms a second of each server — " +
            string.Join("; ", setups.Select(s => s.Name + ": " + string.Join(", ", s.Servers.Select((server, i) => string.Create(inv, $"{server.Name} {s.IdleCpuMsPerSecond[i]:0.0}"))))) +
            ". The table's server CPU an operation includes this background work for the window's length.");
        var errors = setups.SelectMany(s => s.Results.Values).Where(t => t.Tally.FirstError is not null).Select(t => t.Tally.FirstError).Distinct().ToList();
        if (errors.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("First errors: " + string.Join("; ", errors));
        }
        if (serverFailures.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("The servers' log lines about failures (the first 12):");
            md.AppendLine();
            foreach (var line in serverFailures) md.AppendLine("    " + line);
        }
        md.AppendLine();
        md.AppendLine("## Reading");
        md.AppendLine();
        foreach (var operation in Enum.GetValues<HostedOperation>())
        {
            var (home, one, three) = (setups[0].Results[operation], setups[1].Results[operation], setups[2].Results[operation]);
            var hostedCpu = one.MsPerOperation(one.ServerCpu.Sum() + one.DatabaseCpu);
            md.AppendLine(string.Create(inv, $"- {operation.ToString().ToLowerInvariant()}s: one node {one.PerSecond:0.0}/s = {one.PerSecond / home.PerSecond:0.00}× the home server's {home.PerSecond:0.0}/s; three nodes behind HAProxy {three.PerSecond:0.0}/s = {three.PerSecond / one.PerSecond:0.00}× one node. CPU an operation: home server {home.MsPerOperation(home.ServerCpu.Sum()):0.00} ms; one node {one.MsPerOperation(one.ServerCpu.Sum()):0.00} ms plus PostgreSQL {one.MsPerOperation(one.DatabaseCpu):0.00} ms = {hostedCpu:0.00} ms; three nodes {three.MsPerOperation(three.ServerCpu.Sum()):0.00} ms plus PostgreSQL {three.MsPerOperation(three.DatabaseCpu):0.00} ms plus HAProxy {three.MsPerOperation(three.BalancerCpu):0.00} ms."));
        }
        md.AppendLine(string.Create(inv, $"- Every setup shares the same {Environment.ProcessorCount} cores with the load generator (whose CPU per operation is in the table) and with other work, so three nodes cannot be faster here than the cores allow: the rate ratio between one and three nodes says what the balancer and the spread cost on a saturated machine, not what three machines would give. The CPU an operation costs at the servers and the database is what carries to other machines, and what docs/hosting.md sizes from."));
        var json = JsonSerializer.Serialize(new
        {
            owners,
            terminals_per_setup = owners * perOwner,
            window_seconds = seconds,
            rounds,
            idle_cpu_ms_per_second = setups.Select(s => new { name = s.Name, servers = s.Servers.Select((server, i) => new { server = server.Name, ms = Math.Round(s.IdleCpuMsPerSecond[i], 1) }) }),
            cores = Environment.ProcessorCount,
            load_average_before = loadBefore,
            load_average_after = loadAfter,
            setups = setups.Select(s => new
            {
                name = s.Name,
                operations = s.Results.Select(r =>
                {
                    var (p50, p99) = r.Value.Tally.Percentiles();
                    return new
                    {
                        operation = r.Key.ToString().ToLowerInvariant(),
                        completed = r.Value.Tally.Count,
                        seconds = Math.Round(r.Value.Seconds, 2),
                        per_second = Math.Round(r.Value.PerSecond, 1),
                        p50_ms = Math.Round(p50, 1),
                        p99_ms = Math.Round(p99, 1),
                        errors = r.Value.Tally.Errors,
                        first_error = r.Value.Tally.FirstError,
                        server_cpu_ms_per_op = s.Servers.Select((server, i) => new { server = server.Name, ms = Math.Round(r.Value.MsPerOperation(r.Value.ServerCpu[i]), 3) }),
                        postgres_cpu_ms_per_op = Math.Round(r.Value.MsPerOperation(r.Value.DatabaseCpu), 3),
                        haproxy_cpu_ms_per_op = Math.Round(r.Value.MsPerOperation(r.Value.BalancerCpu), 3),
                        generator_cpu_ms_per_op = Math.Round(r.Value.MsPerOperation(r.Value.GeneratorCpu), 3),
                        peak_rss_mb = s.Servers.Select((server, i) => new { server = server.Name, mb = Math.Round(r.Value.PeakRssMb[i], 1) }),
                    };
                }),
            }),
        }, Indented);
        return new Rendered(md.ToString(), json);
    }

    private static string Dash(HostedSetup.Totals t, double cpu) => cpu == 0 ? "–" : t.MsPerOperation(cpu).ToString("0.00", CultureInfo.InvariantCulture);
}
