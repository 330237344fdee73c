using Daiko.Cards;
using Daiko.Money;

namespace Daiko.Home.Money;

/// <summary>The home card as the purse's card: signatures are made in its token, gated by its state.</summary>
public sealed class HomeCardPurse(IHomeCard card) : IPurseCard
{
    public string CardId => card.CardId;

    public bool CryptoReady => card.State == HomeCardState.CryptoReady;

    public IMoneySigner OpenSigningKey() => card.OpenMoneySigner();

    public System.Security.Cryptography.ECDsa PurseKey() => card.PursePublicKey();

    public long? ReadSealCounter() => card.ReadPurseCounter();

    public void AdvanceSealCounter(long value) => card.AdvancePurseCounter(value);
}
