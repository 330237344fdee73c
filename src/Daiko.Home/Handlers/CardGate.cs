using Daiko.Cards;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Handlers;

/// <summary>Gates requests on the home card's state, and names that state for the protocol.</summary>
public sealed class CardGate(IHomeCard card)
{
    public IHomeCard Card => card;

    public static CardState ToProtocol(HomeCardState state) => state switch
    {
        HomeCardState.Locked => CardState.Locked,
        HomeCardState.RemoteAccessWait => CardState.RemoteAccessWait,
        HomeCardState.CryptoReady => CardState.CryptoReady,
        _ => CardState.Disabled,
    };

    /// <summary>The state's name as people and the protocol read it (e.g. <c>remote-access-wait</c>).</summary>
    public static string StateName(HomeCardState state) => ToProtocol(state).ToWire();

    /// <summary>Null when the card is crypto-ready; otherwise the refusal to answer with.</summary>
    public ErrorReply? RefusalUnlessReady()
    {
        var state = card.State;
        if (state == HomeCardState.CryptoReady) return null;
        return new ErrorReply(state == HomeCardState.Disabled ? ErrorCode.CardDisabled : ErrorCode.CardNotReady, state switch
        {
            HomeCardState.Disabled => "the home card is disabled after 3 wrong PINs; it must be unblocked with the admin code",
            HomeCardState.Locked => "the home card is locked: run 'daiko terminal unlock' (PIN1 and PIN2)",
            _ => "the home card waits for PIN2: run 'daiko terminal unlock'",
        });
    }
}
