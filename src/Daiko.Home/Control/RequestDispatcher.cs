using Daiko.Home.Authority;
using Daiko.Home.Devices;
using Daiko.Home.Handlers;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Control;

/// <summary>The handlers of a running home server, one per concern.</summary>
public sealed record HomeHandlers(
    CardGate Gate,
    DeviceAuthority Authority,
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
/// without a device certificate; <c>unlock</c>, <c>lock</c> and <c>card-status</c> without a session;
/// everything else (delegation, signatures, chain verdicts, the wallet, appliances, PIM) only to a
/// device holding its own unlock session, and under that session's work token.
/// A request that meets the store unreachable (<see cref="Storage.StoreOutage"/>) is answered <c>unavailable</c>,
/// not <c>internal</c>: the terminal may try again, and the log says what failed.
/// </summary>
public sealed class RequestDispatcher(HomeHandlers handlers, Microsoft.Extensions.Logging.ILogger? logger = null)
{
    public async Task DispatchAsync(ControlRequest request, ControlConnection connection, string? deviceId, System.Net.IPAddress? peer = null)
    {
        HandlerResult result;
        try
        {
            result = await AnswerAsync(request.Message, connection, deviceId, peer);
        }
        catch (Exception e) when (Storage.StoreOutage.Is(e) && !connection.Closed.IsCancellationRequested)
        {
            if (logger is not null) Storage.StoreOutage.Log(logger, request.Message.Type, e);
            result = HandlerResult.Error(ErrorCode.Unavailable, Storage.StoreOutage.Sentence);
        }
        await SendReplyAsync(connection, request, result);
    }

    /// <summary>
    /// Writes a handler's reply, then runs what it said to run: <see cref="HandlerResult.AfterReply"/> once written;
    /// <see cref="HandlerResult.Abandoned"/> when nothing of it left (the channel closed before its turn to write);
    /// <see cref="HandlerResult.MaybeSent"/> (else Abandoned) when the write began and failed.
    /// </summary>
    internal static async Task SendReplyAsync(ControlConnection connection, ControlRequest request, HandlerResult result)
    {
        try
        {
            await connection.ReplyAsync(request, result.Reply);
        }
        catch (OperationCanceledException)
        {
            // Cancelled waiting for its turn to write (the channel closed): nothing of the reply left.
            result.Abandoned?.Invoke();
            throw;
        }
        catch
        {
            // The write began: the peer may hold part of the reply.
            (result.MaybeSent ?? result.Abandoned)?.Invoke();
            throw;
        }
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
        try
        {
            await handlers.Policies.NoteUseAsync(deviceId, connection.Closed);
        }
        catch (Exception e) when (Storage.StoreOutage.Is(e))
        {
            // The device's last use is bookkeeping: it does not decide the request (a wrong PIN is still checked and counted
            // on the card, and answered as one, while the store is out of reach). Whatever the request needs from the store
            // says the outage itself; the watchers log it.
        }
        switch (message)
        {
            case UnlockRequest unlock: return await handlers.Card.UnlockAsync(unlock, new RequestContext(connection, deviceId));
            case LockRequest: return await handlers.Card.LockAsync(new RequestContext(connection, deviceId));
            case CardStatusRequest: return await handlers.Card.StatusAsync(new RequestContext(connection, deviceId));
        }
        // Everything past this point wields the card or the owner's data: only for a device holding its own
        // session (an allow-list of the three above, not a list of what needs one, so a new request type is
        // refused until it is placed).
        if (await handlers.Authority.RefusalAsync(deviceId, connection.Closed) is { } refusal) return refusal;
        using var work = handlers.Authority.LinkWork(deviceId, connection.Closed);
        try
        {
            return await AnswerInSessionAsync(message, new RequestContext(connection, deviceId, work.Token));
        }
        catch (OperationCanceledException) when (work.Token.IsCancellationRequested && !connection.Closed.IsCancellationRequested)
        {
            // The device's session ended while this was served (its lock from another channel, idle, revocation,
            // the card leaving crypto-ready): the work stopped, and the device is told why, not "internal". A session
            // The owner's policy change that took a market or mode away ends the work too, the session staying open:
            // unlocking is no remedy then.
            // (A lock, idle end or revocation at the same moment may have found the work already ended by the policy.)
            return work.EndedByPolicy && await handlers.Authority.HasSessionAsync(deviceId, connection.Closed)
                ? HandlerResult.Error(ErrorCode.PolicyRefused, PolicyCutSentence)
                : HandlerResult.Error(ErrorCode.Locked, "this device's unlock session ended while the request was served; " + DeviceAuthority.NoOwnSession);
        }
    }

    /// <summary>Told a device whose request was under way when the owner took a market or mode away from its policy.</summary>
    public const string PolicyCutSentence =
        "the owner changed this device's policy while the request was served, and what was under way under the old one ended (this device's session with the home card stays open): ask again, and what the new policy allows is served";

    private async Task<HandlerResult> AnswerInSessionAsync(ControlMessage message, RequestContext context)
    {
        switch (message)
        {
            case DelegateRequest delegate_: return await handlers.Delegation.DelegateAsync(delegate_, context);
            case PrefetchRequest prefetch: return await handlers.Delegation.PrefetchAsync(prefetch, context);
            case StockRequest stock: return await handlers.Delegation.StockAsync(stock, context);
            case SignRequest sign: return await handlers.Assist.SignAsync(sign, context);
            case VerifyChainRequest verify: return await handlers.Assist.VerifyChainAsync(verify, context);
            case WalletBalanceRequest or WalletHistoryRequest or WalletPayRequest or WalletRefillRequest
                or WalletCancelRequest or WalletConfirmRequest or WalletMailRequest:
                return await handlers.Wallet.HandleAsync(message, context);
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
