using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Home.Money;
using Daiko.Home.Storage;
using Daiko.Money;

namespace Daiko.Bench.Purse;

/// <summary>
/// What the purse benchmarks pay from: a SoftHSM2 home card unlocked in <c>dir</c>, a SQLite ledger in
/// <c>dir/database</c> refilled once by a bank, and a market whose signed payment requests it takes.
/// </summary>
internal sealed class FundedPurse : IDisposable
{
    private readonly HomeCard _card;
    private readonly ECDsa _market = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa _bank = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly DateTimeOffset _expires = DateTimeOffset.UtcNow.AddDays(1);
    private int _serial;

    public FundedPurse(string dir, string database)
    {
        _card = HomeCard.Initialize(new HomeCardOptions(dir), HomeCardKeyType.P256, "1111", "2222", "admin-code-123");
        _card.EnterPin1("1111");
        _card.EnterPin2("2222");
        Ledger = new PurseLedger(HomeStore.Sqlite(Path.Combine(dir, database)), new HomeCardPurse(_card),
            (party, role) => (party, role) switch { ("market", PayeeRole.Market) => _market, ("bank", PayeeRole.Bank) => _bank, _ => null });
        Ledger.Refill(new Refill("bank", _card.CardId, "fill", long.MaxValue / 4, "JPY", _expires).Sign(_bank));
    }

    public PurseLedger Ledger { get; }

    /// <summary>How many payment requests have been made so far.</summary>
    public int Requested => _serial;

    /// <summary>A new signed request of 1 JPY (a fresh order id each time).</summary>
    public byte[] NextRequest() => new PaymentRequest("market", "o", $"q{Interlocked.Increment(ref _serial) - 1}", 1, "JPY", _expires, "").Sign(_market);

    public void Dispose()
    {
        _market.Dispose();
        _bank.Dispose();
        _card.Dispose();
    }
}
