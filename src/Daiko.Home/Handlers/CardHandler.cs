using Daiko.Cards;
using Daiko.Home.Delegation;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Handlers;

/// <summary>unlock, lock and card-status.</summary>
public sealed class CardHandler(CardGate gate, DeviceRegistry devices, SessionCache<Daiko.Tls.SessionTicket> tickets, Daiko.Home.Server.WalletService wallet, ILogger logger)
{
    private HomeCard Card => gate.Card;

    /// <summary>Both PINs are checked on every unlock, also when another terminal already unlocked the card.</summary>
    public async Task<HandlerResult> UnlockAsync(UnlockRequest request, RequestContext context)
    {
        var first = Card.EnterPin1(request.Pin1);
        if (!first.Accepted)
        {
            await devices.AuditAsync(context.DeviceId, "unlock", null, null, first.Outcome == PinOutcome.Disabled ? "card disabled" : "wrong PIN1");
            return HandlerResult.Error(first.Outcome == PinOutcome.Disabled ? ErrorCode.CardDisabled : ErrorCode.WrongPin1, first.Message, first.TriesLeft);
        }
        var second = Card.EnterPin2(request.Pin2);
        if (!second.Accepted)
        {
            await devices.AuditAsync(context.DeviceId, "unlock", null, null, second.Outcome == PinOutcome.Disabled ? "card disabled" : "wrong PIN2");
            return HandlerResult.Error(second.Outcome switch
            {
                PinOutcome.Disabled => ErrorCode.CardDisabled,
                PinOutcome.WrongState => ErrorCode.CardLocked,
                _ => ErrorCode.WrongPin2,
            }, second.Message, second.TriesLeft);
        }
        await devices.AuditAsync(context.DeviceId, "unlock", null, null, "crypto-ready");
        try
        {
            // A purse from before the card's seal is sealed once here, after its log verifies.
            wallet.Ledger.SealIfUnsealed();
        }
        catch (Daiko.Money.PurseException e)
        {
            logger.PurseNotSealed(e.Message);
        }
        return new UnlockedReply(CardGate.ToProtocol(Card.State));
    }

    public async Task<HandlerResult> LockAsync(RequestContext context)
    {
        Card.Done();
        tickets.PurgeDevice(context.DeviceId);
        await devices.AuditAsync(context.DeviceId, "lock", null, null, "remote-access-wait");
        return new LockedReply(CardGate.ToProtocol(Card.State));
    }

    public HandlerResult Status()
    {
        var status = Card.GetStatus();
        return new CardStatusReply(CardGate.ToProtocol(status.State), status.Pin1TriesLeft, status.Pin2TriesLeft);
    }
}
