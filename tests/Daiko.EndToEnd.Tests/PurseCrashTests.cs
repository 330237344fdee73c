using Daiko.Cards;
using Daiko.Home.Money;
using Daiko.TestSupport;
using Microsoft.Data.Sqlite;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// 1,000 pay/refill/cancel operations in a child process killed with SIGKILL at random points and
/// restarted: afterwards the card's balance equals its log, and the bank's and market's records agree.
/// </summary>
// It opens a home card in this process, as the hosted tests open the site's token: a process holds one PKCS#11 module at a time.
[Collection(SecondStream.Name)]
public sealed class PurseCrashTests
{
    [Fact]
    public async Task KilledAtRandomPoints_NothingIsLostOrDoubled()
    {
        using var dir = new TempDirectory("daiko-crash");
        var worker = Path.Combine(AppContext.BaseDirectory, "Daiko.PurseCrashWorker.dll");
        var random = new Random(7);
        var kills = 0;
        for (var attempt = 0; attempt < 6; attempt++)
        {
            using var process = new ExternalProcess("dotnet", [worker, dir.Path, "1000"]);
            await Task.Delay(random.Next(1500, 4000));
            if (process.HasExited) break;
            process.Kill();
            kills++;
        }
        using (var final = new ExternalProcess("dotnet", [worker, dir.Path, "1000"]))
        {
            Assert.Equal(0, await final.WaitForExitAsync(TimeSpan.FromMinutes(3)));
            Assert.Contains("done", final.Output, StringComparison.Ordinal);
        }
        Assert.True(kills > 0, "the worker finished before it could be killed: the test proved nothing");

        using var card = HomeCard.Open(new HomeCardOptions(Path.Combine(dir.Path, "home")));
        var ledger = new PurseLedger(Path.Combine(dir.Path, "home", "home.db"), new Daiko.Home.Money.HomeCardPurse(card), (_, _) => null);
        Assert.True(ledger.VerifyLog(), "balance and log disagree or the chain is broken");
        var log = ledger.History();
        Assert.Equal(log.Sum(e => e.Amount), ledger.Balance("JPY"));
        Assert.Equal(log.Count, log.Select(e => (e.Kind, e.Reference)).Distinct().Count());

        var settled = Query(Path.Combine(dir.Path, "bank.db"), "SELECT refill_id, amount FROM settled");
        Assert.Equal(log.Where(e => e.Kind == "refill").ToDictionary(e => e.Reference, e => e.Amount), settled);
        var deposits = Query(Path.Combine(dir.Path, "market.db"), "SELECT payment_id, amount FROM deposits");
        Assert.Equal(log.Where(e => e.Kind == "payment").ToDictionary(e => e.Reference, e => -e.Amount), deposits);
        var cancelled = Query(Path.Combine(dir.Path, "market.db"), "SELECT payment_id, amount FROM deposits WHERE cancelled = 1");
        Assert.Equal(log.Where(e => e.Kind == "cancellation").Select(e => e.Reference).Order(), cancelled.Keys.Order());
    }

    private static Dictionary<string, long> Query(string path, string sql)
    {
        using var c = new SqliteConnection($"Data Source={path};Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        using var r = cmd.ExecuteReader();
        var result = new Dictionary<string, long>();
        while (r.Read()) result[r.GetString(0)] = r.GetInt64(1);
        return result;
    }
}
