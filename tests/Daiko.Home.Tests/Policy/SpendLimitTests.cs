using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Home.Money;
using Daiko.Home.Policy;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Server;
using Daiko.Money;
using Daiko.Home.Tests.Money;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Policy;

/// <summary>
/// A device's daily spend limit, charged in the purse's own transaction: payments racing from two
/// ledgers on one store (two home-server processes, or two nodes) never pass it. SQLite and PostgreSQL.
/// </summary>
public abstract class SpendLimitContract(StoreKind kind) : PurseContract(kind, "daiko-spend")
{
    private PurseLedger Ledger() => NewLedger();

    private byte[] Request(string id, long amount, string currency = "JPY") =>
        new PaymentRequest("market.test", "order-" + id, id, amount, currency, DateTimeOffset.UtcNow.AddMinutes(5), "").Sign(Market);

    [Fact]
    public async Task ConcurrentPayments_NeverSpendMoreThanTheDailyLimit()
    {
        var first = Ledger();
        first.Refill(new Refill("bank.test", Card.CardId, "r1", 100_000, "JPY", DateTimeOffset.UtcNow.AddMinutes(5)).Sign(Bank));
        var ledgers = new[] { first, Ledger() };
        var spend = new DeviceSpend("phone", 1000, TimeProvider.System);
        first.Pay(Request("warm-up", 100), spend.Charge);

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => Task.Run(() =>
        {
            for (var attempt = 0; attempt < 50; attempt++)
            {
                try
                {
                    ledgers[i % 2].Pay(Request("q" + i, 300), spend.Charge);
                    return "paid";
                }
                catch (PolicyRefusedException e)
                {
                    Assert.Equal(PolicyRule.SpendLimit, e.Rule);
                    return "refused";
                }
                catch (Npgsql.PostgresException e) when (e.SqlState is "40001" or "40P01")
                {
                    // PostgreSQL's serializable isolation made one of two racing payments give way: it is retried.
                }
            }
            return "gave up";
        })));

        Assert.Equal(3, outcomes.Count(o => o == "paid"));
        Assert.Equal(7, outcomes.Count(o => o == "refused"));
        Assert.Equal(100_000 - 1000, first.Balance("JPY"));
        Assert.True(first.VerifyLog());
    }

    [Fact]
    public void TheLimit_IsPerDevice_PerCurrency_AndARefusedPaymentMovesNothing()
    {
        var ledger = Ledger();
        ledger.Refill(new Refill("bank.test", Card.CardId, "r1", 10_000, "JPY", DateTimeOffset.UtcNow.AddMinutes(5)).Sign(Bank));
        ledger.Refill(new Refill("bank.test", Card.CardId, "r2", 10_000, "EUR", DateTimeOffset.UtcNow.AddMinutes(5)).Sign(Bank));
        var phone = new DeviceSpend("phone", 500, TimeProvider.System);

        ledger.Pay(Request("a", 400), phone.Charge);
        var refused = Assert.Throws<PolicyRefusedException>(() => ledger.Pay(Request("b", 200), phone.Charge));
        ledger.Pay(Request("c", 100), phone.Charge);
        ledger.Pay(Request("d", 500, "EUR"), phone.Charge);
        ledger.Pay(Request("e", 500), new DeviceSpend("tablet", 500, TimeProvider.System).Charge);

        Assert.Contains("spend limit", refused.Message, StringComparison.Ordinal);
        Assert.Equal(10_000 - 400 - 100 - 500, ledger.Balance("JPY"));
        Assert.Equal(4, ledger.History().Count(e => e.Kind == "payment"));
        // The refused request id was not used up: tomorrow (or with a higher limit) it can still be paid.
        ledger.Pay(Request("b", 200), new DeviceSpend("phone", 1000, TimeProvider.System).Charge);
    }
}

[Collection("home card")]
public sealed class SqliteSpendLimitTests() : SpendLimitContract(StoreKind.Sqlite)
{
}

[Collection("home card")]
public sealed class PostgresSpendLimitTests() : SpendLimitContract(StoreKind.Postgres)
{
}
