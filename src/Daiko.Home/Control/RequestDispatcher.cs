using Daiko.Home.Devices;
using Daiko.Home.Handlers;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Control;

/// <summary>The handlers of a running home server, one per concern.</summary>
public sealed record HomeHandlers(
    CardGate Gate,
    EnrollmentHandler Enrollment,
    CardHandler Card,
    DelegationHandler Delegation,
    AssistHandler Assist,
    ApplianceHandler Appliances,
    PimHandler Pim,
    WalletHandler Wallet,
    Policy.DevicePolicies Policies);

/// <summary>
/// Routes each typed request to its handler and sends the typed reply. Only <c>enroll</c> is served
/// without a device certificate; appliances and PIM need a crypto-ready card.
/// </summary>
public sealed class RequestDispatcher(HomeHandlers handlers)
{
    public async Task DispatchAsync(ControlRequest request, ControlConnection connection, string? deviceId, System.Net.IPAddress? peer = null)
    {
        var result = await AnswerAsync(request.Message, connection, deviceId, peer);
        await connection.ReplyAsync(request, result.Reply);
        result.AfterReply?.Invoke();
    }

    private async Task<HandlerResult> AnswerAsync(ControlMessage message, ControlConnection connection, string? deviceId, System.Net.IPAddress? peer)
    {
        if (message is EnrollRequest enroll)
        {
            return deviceId is not null
                ? HandlerResult.Error(ErrorCode.AlreadyEnrolled, "this device is already enrolled")
                : await handlers.Enrollment.EnrollAsync(enroll, peer ?? System.Net.IPAddress.None, connection.Closed);
        }
        // The listener's gate already closed such a connection; this stays as the second line.
        if (deviceId is null) return HandlerResult.Error(ErrorCode.Unauthenticated, "present a device certificate: enroll this terminal first");
        var context = new RequestContext(connection, deviceId);
        await handlers.Policies.NoteUseAsync(deviceId, connection.Closed);
        switch (message)
        {
            case UnlockRequest unlock: return await handlers.Card.UnlockAsync(unlock, context);
            case LockRequest: return await handlers.Card.LockAsync(context);
            case CardStatusRequest: return handlers.Card.Status();
            case DelegateRequest delegate_: return await handlers.Delegation.DelegateAsync(delegate_, context);
            case PrefetchRequest prefetch: return await handlers.Delegation.PrefetchAsync(prefetch, context);
            case SignRequest sign: return await handlers.Assist.SignAsync(sign, context);
            case VerifyChainRequest verify: return await handlers.Assist.VerifyChainAsync(verify, context);
            case WalletBalanceRequest or WalletHistoryRequest or WalletPayRequest or WalletRefillRequest
                or WalletCancelRequest or WalletConfirmRequest or WalletMailRequest:
                return await handlers.Wallet.HandleAsync(message, context);
        }
        if (handlers.Gate.RefusalUnlessReady() is { } refusal
            && message is ApplianceListRequest or ApplianceStateRequest or ApplianceCommandRequest or ApplianceReadingsRequest or PimSyncRequest)
        {
            return refusal;
        }
        return message switch
        {
            ApplianceListRequest => await handlers.Appliances.ListAsync(context),
            ApplianceStateRequest state => await handlers.Appliances.StateAsync(state, context),
            ApplianceCommandRequest command => await handlers.Appliances.CommandAsync(command, context),
            ApplianceReadingsRequest readings => await handlers.Appliances.ReadingsAsync(readings, context),
            PimSyncRequest sync => await handlers.Pim.SyncAsync(sync, context),
            _ => HandlerResult.Error(ErrorCode.UnknownRequest, $"the home server does not answer '{message.Type}' from a terminal"),
        };
    }
}
