using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Money;
using Daiko.Home.Money;
using Microsoft.Data.Sqlite;

namespace Daiko.PurseCrashWorker;

/// <summary>
/// Runs a fixed, seeded plan of pay/refill/cancel operations against the purse with the real home
/// card, keeping a bank's and a market's records in their own SQLite files. Killed with SIGKILL at
/// random points by the crash test and restarted, it replays the plan from the start: every step is
/// idempotent (stored answers, INSERT OR IGNORE), so the end state must be exactly that of one clean run.
/// Every 25th step also pays eight payments at once, so kills land inside shared commits too.
///   usage: worker DIR OPERATIONS
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var dir = args[0];
        var operations = int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);
        var keys = LoadOrCreateKeys(dir);
        var options = new HomeCardOptions(Path.Combine(dir, "home"));
        using var card = File.Exists(Path.Combine(dir, "home", "card", "card.json"))
            ? HomeCard.Open(options)
            : HomeCard.Initialize(options, HomeCardKeyType.P256, "1111", "2222", "admin-code-123");
        card.EnterPin1("1111");
        card.EnterPin2("2222");
        var ledger = new PurseLedger(Path.Combine(dir, "home", "home.db"), new HomeCardPurse(card), (id, role) => (id, role) switch { ("bank", Daiko.Home.Storage.PayeeRole.Bank) => keys.Bank, ("market", Daiko.Home.Storage.PayeeRole.Market) => keys.Market, _ => null });
        using var bank = Open(Path.Combine(dir, "bank.db"), "CREATE TABLE IF NOT EXISTS settled (refill_id TEXT PRIMARY KEY, amount INTEGER NOT NULL)");
        using var market = Open(Path.Combine(dir, "market.db"), "CREATE TABLE IF NOT EXISTS deposits (payment_id TEXT PRIMARY KEY, amount INTEGER NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0)");
        using var cardKey = card.PursePublicKey();
        var random = new Random(20021120);
        var start = DateTimeOffset.FromUnixTimeSeconds(4_000_000_000);
        var payments = new List<string>();
        for (var i = 0; i < operations; i++)
        {
            var kind = random.Next(10);
            var amount = 1 + random.Next(500);
            try
            {
                if (kind < 4 || i < 3)
                {
                    var refill = new Refill("bank", card.CardId, $"refill-{i}", (long)amount * 3, "JPY", start).Sign(keys.Bank);
                    var ack = MoneyCodec.Verify<RefillAck>(ledger.Refill(refill), cardKey);
                    Exec(bank, "INSERT OR IGNORE INTO settled(refill_id, amount) VALUES($i, $a)", ack.RefillId, ack.Amount);
                }
                else if (kind < 8)
                {
                    var request = new PaymentRequest("market", $"order-{i}", $"request-{i}", (long)amount, "JPY", start, "").Sign(keys.Market);
                    var payment = MoneyCodec.Verify<Payment>(ledger.Pay(request), cardKey);
                    Exec(market, "INSERT OR IGNORE INTO deposits(payment_id, amount) VALUES($i, $a)", payment.PaymentId, payment.Amount);
                    payments.Add(payment.PaymentId);
                }
                else if (payments.Count > 0)
                {
                    var target = payments[random.Next(payments.Count)];
                    var cancellation = MoneyCodec.Verify<Cancellation>(ledger.Cancel(target), cardKey);
                    Exec(market, "UPDATE deposits SET cancelled = 1 WHERE payment_id = $i AND $a >= 0", cancellation.PaymentId, 0);
                    var confirmation = new CancellationConfirmation("market", target, cancellation.Amount, "JPY", start).Sign(keys.Market);
                    try
                    {
                        ledger.ApplyConfirmation(confirmation);
                    }
                    catch (PurseException e) when (e.Refusal == PurseRefusal.AlreadyCancelled)
                    {
                    }
                }
            }
            catch (PurseException e) when (e.Refusal is PurseRefusal.InsufficientBalance or PurseRefusal.AlreadyCancelled)
            {
            }
            if (i % 25 == 24) PayConcurrently(ledger, keys.Market, market, cardKey, i, start);
            if (i % 50 == 0) Console.WriteLine($"op {i}");
        }
        Console.WriteLine("done");
        return 0;
    }

    /// <summary>
    /// Eight payments at once (they share the purse's commits); each is recorded by the market only once
    /// the card's answer came back. An answer given before its commit was durable would show after a kill
    /// as a deposit the purse's log does not hold (the replayed request would be paid afresh).
    /// </summary>
    private static void PayConcurrently(PurseLedger ledger, ECDsa marketKey, SqliteConnection market, ECDsa cardKey, int step, DateTimeOffset start)
    {
        var requests = Enumerable.Range(0, 8).Select(k => new PaymentRequest("market", $"burst-{step}-{k}", $"burst-{step}-{k}", 1 + k, "JPY", start, "").Sign(marketKey)).ToList();
        var cardKeyInfo = cardKey.ExportSubjectPublicKeyInfo();
        var payers = requests.Select(request => new Thread(() =>
        {
            using var key = ECDsa.Create();
            key.ImportSubjectPublicKeyInfo(cardKeyInfo, out _);
            try
            {
                var payment = MoneyCodec.Verify<Payment>(ledger.Pay(request), key);
                lock (market) Exec(market, "INSERT OR IGNORE INTO deposits(payment_id, amount) VALUES($i, $a)", payment.PaymentId, payment.Amount);
            }
            catch (PurseException e) when (e.Refusal == PurseRefusal.InsufficientBalance)
            {
            }
        })).ToList();
        foreach (var payer in payers) payer.Start();
        foreach (var payer in payers) payer.Join();
    }

    private sealed record Keys(ECDsa Bank, ECDsa Market);

    private static Keys LoadOrCreateKeys(string dir)
    {
        ECDsa Load(string name)
        {
            var path = Path.Combine(dir, name + ".key");
            var key = ECDsa.Create();
            if (File.Exists(path)) key.ImportFromPem(File.ReadAllText(path));
            else
            {
                key.GenerateKey(ECCurve.NamedCurves.nistP256);
                File.WriteAllText(path + ".tmp", key.ExportPkcs8PrivateKeyPem());
                File.Move(path + ".tmp", path, overwrite: true);
            }
            return key;
        }
        return new Keys(Load("bank"), Load("market"));
    }

    private static SqliteConnection Open(string path, string schema)
    {
        var c = new SqliteConnection($"Data Source={path};Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; " + schema;
        cmd.ExecuteNonQuery();
        return c;
    }

    private static void Exec(SqliteConnection c, string sql, string id, long amount)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.Parameters.AddWithValue("$i", id);
        cmd.Parameters.AddWithValue("$a", amount);
        cmd.ExecuteNonQuery();
    }
}
