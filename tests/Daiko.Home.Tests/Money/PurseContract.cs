using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Home.Money;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Server;
using Daiko.Home.Tests.Storage;
using Daiko.TestSupport;

namespace Daiko.Home.Tests.Money;

/// <summary>
/// The base of the purse contracts (ledger, seal, money ids, spend limits) on SQLite and PostgreSQL: one
/// home store opened for the test, a real home card (SoftHSM2) with both PINs given, and the keys of the
/// market <c>market.test</c> and the bank <c>bank.test</c>.
/// </summary>
public abstract class PurseContract : StoreContract
{
    protected PurseContract(StoreKind kind, string prefix, string cardDirectory = "card")
        : base(kind, prefix)
    {
        Card = UnlockedCard(Path.Combine(Dir, cardDirectory));
        OpenedStore = Store();
    }

    protected HomeCard Card { get; set; }

    protected IHomeStore OpenedStore { get; }

    protected ECDsa Market { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    protected ECDsa Bank { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    /// <summary>A fresh home card in <paramref name="directory"/>, PIN1 and PIN2 given.</summary>
    protected static HomeCard UnlockedCard(string directory)
    {
        var card = HomeCard.Initialize(new HomeCardOptions(directory), HomeCardKeyType.P256, HomeFixture.Pin1, HomeFixture.Pin2, "admin-code-123");
        card.EnterPin1(HomeFixture.Pin1);
        card.EnterPin2(HomeFixture.Pin2);
        return card;
    }

    /// <summary>Whose signature counts for what: the market's on payment requests, the bank's on refills.</summary>
    protected virtual ECDsa? KeyOf(string party, PayeeRole role) =>
        (party, role) switch { ("market.test", PayeeRole.Market) => Market, ("bank.test", PayeeRole.Bank) => Bank, _ => null };

    /// <summary>A ledger on the test's store and card (several of them act as several processes on one store).</summary>
    protected PurseLedger NewLedger(TimeProvider? time = null) => new(OpenedStore, new HomeCardPurse(Card), KeyOf, time);

    public override void Dispose()
    {
        Card.Dispose();
        Market.Dispose();
        Bank.Dispose();
        base.Dispose();
    }
}
