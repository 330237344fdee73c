using Daiko.Cards;
using Daiko.Home.Authority;
using Daiko.Home.Delegation;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Handlers;

/// <summary>unlock, lock and card-status, each for the asking device's own session.</summary>
public sealed class CardHandler(CardGate gate, DeviceAuthority authority, AssistGrants grants, DeviceRegistry devices, SessionCache<Daiko.Tls.SessionTicket> tickets, Money.PurseLedger ledger, ILogger logger)
{
    private IHomeCard Card => gate.Card;

    /// <summary>
    /// Both PINs are checked on every unlock, also when another terminal already unlocked the card; the
    /// asking device alone gets a session. Checking them never interrupts another device's signatures.
    /// </summary>
    public async Task<HandlerResult> UnlockAsync(UnlockRequest request, RequestContext context)
    {
        var first = Card.EnterPin1(request.Pin1);
        if (!first.Accepted)
        {
            await AuditPinRefusalAsync(context.DeviceId, first.Outcome == PinOutcome.Disabled ? "card disabled" : "wrong PIN1");
            await EndAllIfDisabledAsync(first);
            return HandlerResult.Error(first.Outcome == PinOutcome.Disabled ? ErrorCode.CardDisabled : ErrorCode.WrongPin1, first.Message, first.TriesLeft);
        }
        var second = Card.EnterPin2(request.Pin2);
        if (!second.Accepted)
        {
            await AuditPinRefusalAsync(context.DeviceId, second.Outcome == PinOutcome.Disabled ? "card disabled" : "wrong PIN2");
            await EndAllIfDisabledAsync(second);
            return HandlerResult.Error(second.Outcome switch
            {
                PinOutcome.Disabled => ErrorCode.CardDisabled,
                PinOutcome.WrongState => ErrorCode.CardLocked,
                _ => ErrorCode.WrongPin2,
            }, second.Message, second.TriesLeft);
        }
        await authority.OpenAsync(context.DeviceId, context.Connection.Closed);
        await devices.AuditAsync(context.DeviceId, "unlock", null, null, "crypto-ready");
        try
        {
            // A purse from before the card's seal is sealed once here, after its log verifies.
            ledger.SealIfUnsealed();
        }
        catch (Daiko.Money.PurseException e)
        {
            logger.PurseNotSealed(e.Message);
        }
        return new UnlockedReply(CardGate.ToProtocol(Card.State));
    }

    /// <summary>
    /// A wrong PIN's audit line. The try is already counted on the card: should the store be out of reach, the
    /// device is still told the verdict and the tries left (not "unavailable", which would invite a blind retry),
    /// and the line is in the server's log only (<see cref="DeviceRegistry.Audited"/> writes it there first).
    /// </summary>
    private async Task AuditPinRefusalAsync(string deviceId, string outcome)
    {
        try
        {
            await devices.AuditAsync(deviceId, "unlock", null, null, outcome);
        }
        catch (Exception e) when (Storage.StoreOutage.Is(e))
        {
            logger.AuditLineNotStored("unlock", e.GetBaseException().Message);
        }
    }

    /// <summary>"Done" for this device: its session, relays, handoffs and pending signatures end; the card waits for PIN2 once no device holds a session.</summary>
    public async Task<HandlerResult> LockAsync(RequestContext context)
    {
        // What this process holds for the device goes first: a store out of reach then fails the lock (answered
        // "unavailable", to be sent again) with the device's grants and cached tickets here already gone.
        grants.Revoke(context.DeviceId);
        tickets.PurgeDevice(context.DeviceId);
        await authority.EndAsync(context.DeviceId, "lock", context.Connection.Closed);
        if (!await authority.OthersHoldSessionsAsync(context.DeviceId, context.Connection.Closed)) Card.Done();
        await devices.AuditAsync(context.DeviceId, "lock", null, null, "remote-access-wait");
        return new LockedReply(await DeviceStateAsync(context.DeviceId, context.Connection.Closed));
    }

    public async Task<HandlerResult> StatusAsync(RequestContext context)
    {
        var status = Card.GetStatus();
        return new CardStatusReply(await DeviceStateAsync(context.DeviceId, context.Connection.Closed), status.Pin1TriesLeft, status.Pin2TriesLeft);
    }

    /// <summary>The card's state as this device may use it: crypto-ready only with its own session.</summary>
    private async Task<CardState> DeviceStateAsync(string deviceId, CancellationToken cancellationToken)
    {
        var state = Card.State;
        if (state == HomeCardState.CryptoReady && !await authority.HasSessionAsync(deviceId, cancellationToken)) return CardState.RemoteAccessWait;
        return CardGate.ToProtocol(state);
    }

    private async Task EndAllIfDisabledAsync(PinResult result)
    {
        if (result.Outcome == PinOutcome.Disabled) await authority.EndAllAsync("the home card is disabled");
    }
}
