using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Home.Money;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Server;
using Daiko.Money;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Money;

[Collection("home card")]
public sealed class SqlitePurseMoneyIdsTests() : PurseMoneyIdsContract(StoreKind.Sqlite)
{
}

[Collection("home card")]
public sealed class PostgresPurseMoneyIdsTests() : PurseMoneyIdsContract(StoreKind.Postgres)
{
}

/// <summary>
/// Roles and ids: a refill counts only when a bank signed it and a payment request only when a market
/// did; an id belongs to the party that signed it; the same id with another message is a conflict.
/// </summary>
public abstract class PurseMoneyIdsContract : PurseContract
{
    private readonly ECDsa _marketA = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa _marketB = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa _bank2 = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly PurseLedger _ledger;

    protected PurseMoneyIdsContract(StoreKind kind)
        : base(kind, "daiko-ids")
    {
        _ledger = NewLedger();
    }

    protected override ECDsa? KeyOf(string party, PayeeRole role) => (party, role) switch
    {
        ("market-a", PayeeRole.Market) => _marketA,
        ("market-b", PayeeRole.Market) => _marketB,
        ("bank-1", PayeeRole.Bank) => Bank,
        ("bank-2", PayeeRole.Bank) => _bank2,
        _ => null,
    };

    public override void Dispose()
    {
        foreach (var key in new[] { _marketA, _marketB, _bank2 }) key.Dispose();
        base.Dispose();
    }

    private static readonly DateTimeOffset Later = DateTimeOffset.UtcNow.AddHours(1);

    private byte[] Refill(string bank, ECDsa key, string id, long amount) => new Refill(bank, Card.CardId, id, amount, "JPY", Later).Sign(key);

    private static byte[] Request(string market, ECDsa key, string id, long amount) => new PaymentRequest(market, "order-" + id, id, amount, "JPY", Later, "").Sign(key);

    private Payment Paid(byte[] answer)
    {
        using var purse = Card.PursePublicKey();
        return MoneyCodec.Verify<Payment>(answer, purse);
    }

    [Fact]
    public void ARefillSignedByAMarket_IsRefused_EvenWhenItNamesItselfAsTheBank()
    {
        var e = Assert.Throws<PurseException>(() => _ledger.Refill(Refill("market-a", _marketA, "r1", 1_000_000)));

        Assert.Equal(PurseRefusal.BadSignature, e.Refusal);
        Assert.Contains("'market-a' is not declared as a bank", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, _ledger.Balance("JPY"));
        Assert.Empty(_ledger.History());
    }

    [Fact]
    public void APaymentRequestSignedByABank_IsNotPaid()
    {
        _ledger.Refill(Refill("bank-1", Bank, "r1", 1_000));

        var e = Assert.Throws<PurseException>(() => _ledger.Pay(Request("bank-1", Bank, "q1", 500)));

        Assert.Contains("'bank-1' is not a registered market", e.Message, StringComparison.Ordinal);
        Assert.Equal(1_000, _ledger.Balance("JPY"));
    }

    [Fact]
    public void TheSameRequestIdFromTwoMarkets_IsTwoPayments_AndNeitherIsHandedTheOthers()
    {
        _ledger.Refill(Refill("bank-1", Bank, "r1", 1_000));

        var a = Paid(_ledger.Pay(Request("market-a", _marketA, "same", 300)));
        var b = Paid(_ledger.Pay(Request("market-b", _marketB, "same", 200)));

        Assert.Equal(("market-a", 300L), (a.Market, a.Amount));
        Assert.Equal(("market-b", 200L), (b.Market, b.Amount));
        Assert.NotEqual(a.PaymentId, b.PaymentId);
        Assert.Equal(500, _ledger.Balance("JPY"));
    }

    [Fact]
    public void ARefillIdOneBankUsed_DoesNotUseUpTheSameIdOfAnotherBank()
    {
        _ledger.Refill(Refill("bank-1", Bank, "r-7", 1_000));
        _ledger.Refill(Refill("bank-2", _bank2, "r-7", 1_000));

        Assert.Equal(2_000, _ledger.Balance("JPY"));
    }

    [Fact]
    public void AnIdenticalRepeat_SignedAfresh_GetsTheFirstAnswer_AndAnotherMessageUnderTheSameIdIsAConflict()
    {
        _ledger.Refill(Refill("bank-1", Bank, "r1", 1_000));
        var first = _ledger.Pay(Request("market-a", _marketA, "q1", 300));

        // ECDSA signatures differ each time: the same content is the same request.
        Assert.Equal(first, _ledger.Pay(Request("market-a", _marketA, "q1", 300)));
        var conflict = Assert.Throws<PurseException>(() => _ledger.Pay(Request("market-a", _marketA, "q1", 301)));
        var refillConflict = Assert.Throws<PurseException>(() => _ledger.Refill(Refill("bank-1", Bank, "r1", 5_000)));

        Assert.Equal(PurseRefusal.Conflict, conflict.Refusal);
        Assert.Equal(PurseRefusal.Conflict, refillConflict.Refusal);
        Assert.Contains("'market-a' already used pay id 'q1' for a different message", conflict.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Paid(first).PaymentId, conflict.Message, StringComparison.Ordinal);
        Assert.Equal(700, _ledger.Balance("JPY"));
        Assert.Equal(2, _ledger.History().Count);
    }
}
