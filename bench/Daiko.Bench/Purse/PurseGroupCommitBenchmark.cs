using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Home.Money;
using Daiko.Home.Storage;
using Daiko.Money;
using Microsoft.Data.Sqlite;

namespace Daiko.Bench.Purse;

/// <summary>
/// Payments per second with P concurrent payers (asynchronous, as the home server's handlers pay) (group commit: the payers waiting at a commit share
/// it) and with one payer, against a plain SQLite insert-and-commit loop with the same journal and
/// synchronous setting (WAL, synchronous=FULL: one fsync per commit) on the same disk, in the same run.
/// The ways alternate in two rounds so they share the machine's state, after a round of each that is
/// not counted (the code is compiled and the caches are warm, as in a home server that has been up a
/// while); each payment is verified, debited, logged, signed in the token (SoftHSM2) and sealed.
/// </summary>
public static class PurseGroupCommitBenchmark
{
    /// <summary><c>purse-group [--payers 100] [--per-payer 20]</c> (a process of its own: one home card per process).</summary>
    public static int Run(string[] args)
    {
        var payers = int.Parse(Load.LoadBenchmark.Option(args, "--payers", "100"), CultureInfo.InvariantCulture);
        var perPayer = int.Parse(Load.LoadBenchmark.Option(args, "--per-payer", "20"), CultureInfo.InvariantCulture);
        var dir = Directory.CreateTempSubdirectory("daiko-purse-group-").FullName;
        try
        {
            Run(dir, payers, perPayer);
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void Run(string dir, int payers, int perPayer)
    {
        using var purse = new FundedPurse(dir, "group.db");
        var ledger = purse.Ledger;
        List<byte[]> Requests(int count) => [.. Enumerable.Range(0, count).Select(_ => purse.NextRequest())];

        using var plain = new SqliteConnection($"Data Source={Path.Combine(dir, "plain.db")};Pooling=False");
        plain.Open();
        using (var setup = plain.CreateCommand())
        {
            setup.CommandText = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)";
            setup.ExecuteNonQuery();
        }
        var total = payers * perPayer;
        var group = (Count: 0, Seconds: 0.0, Cpu: 0.0);
        var single = (Count: 0, Seconds: 0.0, Cpu: 0.0);
        var inserts = (Count: 0, Seconds: 0.0, Cpu: 0.0);
        double Cpu() => Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds;
        var before = ledger.Statistics;
        for (var round = -1; round < 2; round++)
        {
            if (round == 0)
            {
                // The warm-up round is over: count from here.
                (group, single, inserts) = ((0, 0, 0), (0, 0, 0), (0, 0, 0));
                before = ledger.Statistics;
            }
            var batches = Enumerable.Range(0, payers).Select(_ => Requests(perPayer)).ToList();
            var cpu = Cpu();
            var clock = Stopwatch.StartNew();
            // Each payer awaits its payments one after another, as the home server's request handlers do
            // (PayAsync); a payer waiting for its commit holds no thread.
            var payersDone = batches.Select(mine => Task.Run(async () =>
            {
                foreach (var request in mine) await ledger.PayAsync(request);
            })).ToArray();
            Task.WaitAll(payersDone);
            group = (group.Count + total, group.Seconds + clock.Elapsed.TotalSeconds, group.Cpu + Cpu() - cpu);

            var alone = Requests(Math.Max(1, total / 10));
            cpu = Cpu();
            clock.Restart();
            foreach (var request in alone) ledger.Pay(request);
            single = (single.Count + alone.Count, single.Seconds + clock.Elapsed.TotalSeconds, single.Cpu + Cpu() - cpu);

            cpu = Cpu();
            clock.Restart();
            for (var i = 0; i < total; i++)
            {
                using var tx = plain.BeginTransaction();
                using var insert = plain.CreateCommand();
                insert.Transaction = tx;
                insert.CommandText = "INSERT INTO t(v) VALUES('x')";
                insert.ExecuteNonQuery();
                tx.Commit();
            }
            inserts = (inserts.Count + total, inserts.Seconds + clock.Elapsed.TotalSeconds, inserts.Cpu + Cpu() - cpu);
        }
        var after = ledger.Statistics;
        var inv = CultureInfo.InvariantCulture;
        double Rate((int Count, double Seconds, double Cpu) w) => w.Count / w.Seconds;
        double CpuMs((int Count, double Seconds, double Cpu) w) => w.Cpu / w.Count;
        Console.WriteLine(string.Create(inv, $"# purse: group commit, {payers} concurrent payers ({Environment.ProcessorCount} shared cores, load average {LoadAverage()}; the ways alternate in two rounds of the same run, after a warm-up round of each)"));
        Console.WriteLine();
        Console.WriteLine("| way | payments or inserts | per second | ratio to plain SQLite | CPU ms each (this process, SoftHSM2 included) |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        Console.WriteLine(string.Create(inv, $"| payments, {payers} concurrent payers, group commit | {group.Count} | {Rate(group):0} | {Rate(group) / Rate(inserts):0.00} | {CpuMs(group):0.00} |"));
        Console.WriteLine(string.Create(inv, $"| payments, one payer (a commit each) | {single.Count} | {Rate(single):0} | {Rate(single) / Rate(inserts):0.00} | {CpuMs(single):0.00} |"));
        Console.WriteLine(string.Create(inv, $"| plain SQLite insert-and-commit, one connection, WAL, synchronous=FULL | {inserts.Count} | {Rate(inserts):0} | 1.00 | {CpuMs(inserts):0.00} |"));
        Console.WriteLine();
        var commits = after.Commits - before.Commits;
        var operations = after.Operations - before.Operations;
        Console.WriteLine(string.Create(inv, $"The purse's statistics over these runs: {operations} payments in {commits} durable commits ({(double)operations / commits:0.0} payments a commit; the one-payer runs commit each payment alone)."));
        Console.WriteLine("Each payment is verified (the market's COSE signature), debited, logged in the hash chain and signed in the token; each commit signs one seal in the token, fsyncs once and writes the token's counter once.");
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";
}
