using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Home.Money;
using Daiko.Home.Storage;
using Daiko.Money;

namespace Daiko.Bench.Purse;

/// <summary>
/// <c>purse-ops [--entries 500,2000,8000] [--ops 40]</c>: the cost of one payment as the purse's log
/// grows, with the real home card (SoftHSM2) signing the payment and the seal, on SQLite. Beside it,
/// the whole-chain check (what every operation ran before it checked only the seal and the tail) at
/// the same length. Concurrent payers: <see cref="PurseGroupCommitBenchmark"/> (<c>purse-group</c>).
/// </summary>
public static class PurseOpsBenchmark
{
    public static int Run(string[] args)
    {
        var entries = Option(args, "--entries", "500,2000,8000").Split(',').Select(e => int.Parse(e, CultureInfo.InvariantCulture)).ToList();
        var ops = int.Parse(Option(args, "--ops", "40"), CultureInfo.InvariantCulture);
        var dir = Directory.CreateTempSubdirectory("daiko-purse-bench-").FullName;
        try
        {
            using var purse = new FundedPurse(dir, "home.db");
            var ledger = purse.Ledger;
            void Pay() => ledger.Pay(purse.NextRequest());

            Console.WriteLine($"# purse: one payment as the log grows (SQLite, SoftHSM2 home card; {Environment.ProcessorCount} cores, shared)");
            Console.WriteLine();
            Console.WriteLine("| log entries | ms per payment (mean of " + ops + ") | ms for the whole-chain check at that length |");
            Console.WriteLine("|---:|---:|---:|");
            foreach (var target in entries)
            {
                while (purse.Requested + 1 < target) Pay();
                var clock = Stopwatch.StartNew();
                for (var i = 0; i < ops; i++) Pay();
                var perPayment = clock.Elapsed.TotalMilliseconds / ops;
                clock.Restart();
                var intact = ledger.VerifyLog();
                var chain = clock.Elapsed.TotalMilliseconds;
                if (!intact) throw new InvalidOperationException("the log did not verify");
                Console.WriteLine($"| {purse.Requested + 1} | {perPayment:0.00} | {chain:0.0} |");
            }
            Console.WriteLine();
            Console.WriteLine("A payment checks the seal, the counter and the log's last entry; the whole chain is checked at unlock, at a process's first operation, on every history read and report, and whenever the store's trigger counted an edit of a log row.");
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string Option(string[] args, string name, string fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }
}
