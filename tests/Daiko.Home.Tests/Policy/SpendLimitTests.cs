using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Home.Money;
using Daiko.Home.Policy;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Server;
using Daiko.Money;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Policy;

/// <summary>
/// A device's daily spend limit, charged in the purse's own transaction: payments racing from two
/// ledgers on one store (two home-server processes, or two nodes) never pass it. SQLite and PostgreSQL.
/// </summary>
public abstract class SpendLimitContract : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-spend");
    private readonly HomeCard _card;
    private readonly ECDsa _market = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa _bank = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly IHomeStore _store;

    protected SpendLimitContract()
    {
        _card = HomeCard.Initialize(new HomeCardOptions(_dir.Path), HomeCardKeyType.P256, HomeFixture.Pin1, HomeFixture.Pin2, "admin-code-123");
        _card.EnterPin1(HomeFixture.Pin1);
        _card.EnterPin2(HomeFixture.Pin2);
        _store = CreateStore(_dir.Path);
    }

    protected abstract IHomeStore CreateStore(string directory);

    public virtual void Dispose()
    {
        _card.Dispose();
        _market.Dispose();
        _bank.Dispose();
        _dir.Dispose();
    }

    private PurseLedger Ledger() => new(_store, new HomeCardPurse(_card), (party, role) => (party, role) switch { ("market.test", Daiko.Home.Storage.PayeeRole.Market) => _market, ("bank.test", Daiko.Home.Storage.PayeeRole.Bank) => _bank, _ => null });

    private byte[] Request(string id, long amount, string currency = "JPY") =>
        new PaymentRequest("market.test", "order-" + id, id, amount, currency, DateTimeOffset.UtcNow.AddMinutes(5), "").Sign(_market);

    [Fact]
    public async Task ConcurrentPayments_NeverSpendMoreThanTheDailyLimit()
    {
        var first = Ledger();
        first.Refill(new Refill("bank.test", _card.CardId, "r1", 100_000, "JPY", DateTimeOffset.UtcNow.AddMinutes(5)).Sign(_bank));
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
        ledger.Refill(new Refill("bank.test", _card.CardId, "r1", 10_000, "JPY", DateTimeOffset.UtcNow.AddMinutes(5)).Sign(_bank));
        ledger.Refill(new Refill("bank.test", _card.CardId, "r2", 10_000, "EUR", DateTimeOffset.UtcNow.AddMinutes(5)).Sign(_bank));
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
public sealed class SqliteSpendLimitTests : SpendLimitContract
{
    protected override IHomeStore CreateStore(string directory) => HomeStore.Sqlite(Path.Combine(directory, "home.db"));
}

[Collection("home card")]
public sealed class PostgresSpendLimitTests : SpendLimitContract
{
    private PostgresServer? _server;

    protected override IHomeStore CreateStore(string directory)
    {
        _server = PostgresServer.StartAsync(directory).GetAwaiter().GetResult();
        return HomeStore.Postgres(_server.ConnectionString);
    }

    public override void Dispose()
    {
        base.Dispose();
        _server?.Dispose();
    }
}
