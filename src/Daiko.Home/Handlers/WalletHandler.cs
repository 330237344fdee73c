using System.Text.Json;
using Daiko.Cards;
using Daiko.Money;
using Daiko.Home.Devices;
using Daiko.Home.Mail;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Handlers;

/// <summary>
/// The wallet requests (F12-F15): balance and history for any unlocked terminal, money moves only when
/// the card is ready. A payment also counts against the device's daily spend limit, in the purse's own
/// transaction, and is kept with the device that paid: only that device cancels it (the owner, any).
/// </summary>
public sealed class WalletHandler(Money.PurseLedger ledger, PaymentReports reports, CardGate gate, DeviceRegistry devices, Policy.DevicePolicies policies)
{
    /// <summary>How often a device may have the payment log mailed on demand (each is the whole log, a card signature and an SMTP delivery).</summary>
    public static readonly TimeSpan MailEvery = TimeSpan.FromMinutes(1);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DateTimeOffset> _mailed = new(StringComparer.Ordinal);

    public async Task<HandlerResult> HandleAsync(ControlMessage request, RequestContext context)
    {
        var result = await AnswerAsync(request, context);
        await devices.AuditAsync(context.DeviceId, request.Type, null, null, "handled");
        return result;
    }

    /// <summary>Null when the device may have the log mailed now (the time is taken); else how long it must wait.</summary>
    private TimeSpan? MailWait(string deviceId)
    {
        var now = policies.Time.GetUtcNow();
        while (true)
        {
            if (_mailed.TryGetValue(deviceId, out var last))
            {
                if (now - last < MailEvery) return MailEvery - (now - last);
                if (_mailed.TryUpdate(deviceId, now, last)) return null;
            }
            else if (_mailed.TryAdd(deviceId, now))
            {
                return null;
            }
        }
    }

    /// <summary>The log entries after sequence <paramref name="after"/>, as many as fit in one page.</summary>
    public static WalletHistoryReply HistoryPage(Money.PurseLedger ledger, long after)
    {
        var (page, more) = ReplyPage.Take(ledger.History().Where(e => e.Sequence > after).Select(e => (e.Sequence,
            Line: JsonSerializer.Serialize(new { seq = e.Sequence, at = e.At, kind = e.Kind, reference = e.Reference, amount = e.Amount, currency = e.Currency, balance = e.BalanceAfter }))),
            e => ReplyPage.Size(e.Line));
        var entries = page.Select(e => e.Line).ToList();
        return more ? new WalletHistoryReply(entries, ledger.VerifyLog(), More: true, Last: page[^1].Sequence) : new WalletHistoryReply(entries, ledger.VerifyLog());
    }

    private async Task<HandlerResult> AnswerAsync(ControlMessage request, RequestContext context)
    {
        try
        {
            switch (request)
            {
                case WalletBalanceRequest:
                    return new WalletBalanceReply(gate.Card.CardId, ledger.Currencies().Select(c => new CurrencyAmount(c, ledger.Balance(c))).ToList());
                case WalletHistoryRequest history:
                    return HistoryPage(ledger, history.After);
            }
            if (gate.RefusalUnlessReady() is { } refusal) return refusal;
            switch (request)
            {
                case WalletPayRequest pay:
                    var (policy, name) = await policies.ForDeviceAsync(context.DeviceId, context.Closed);
                    // The payee as the request names it: the ledger then checks its signature with that payee's key.
                    var payee = MoneyCodec.ReadUnverified<PaymentRequest>(pay.Request).Market;
                    if (!policy.AllowsPayee(payee))
                    {
                        throw new Policy.PolicyRefusedException(Policy.PolicyRule.Payees,
                            $"this device may not pay '{payee}' (its payees: {policy.PayeesText})", new Policy.PolicyRemedy("allow it", "--payees"));
                    }
                    var spend = policy.SpendLimitPerDay is { } limit ? new Policy.DeviceSpend(name, limit, policies.Time) : null;
                    var payment = await ledger.PayAsync(pay.Request, spend is null ? null : spend.Charge, payer: context.DeviceId);
                    return new WalletPaymentReply(payment, MoneyCodec.ReadUnverified<Payment>(payment).PaymentId);
                case WalletRefillRequest refill:
                    return new WalletRefillAckReply(await ledger.RefillAsync(refill.Refill));
                case WalletCancelRequest cancel:
                    // A device cancels only its own payments; the owner cancels any from the console.
                    if (ledger.PayerOf(cancel.PaymentId) is (true, var payer) && payer != context.DeviceId)
                    {
                        throw new Policy.PolicyRefusedException(Policy.PolicyRule.OwnPayments,
                            policies.Command == Policy.PolicyCommand.Home
                                ? $"payment {cancel.PaymentId} was not made by this device; the owner can cancel it from the console"
                                // A hosted node serves no owner console.
                                : $"payment {cancel.PaymentId} was not made by this device; only the device that made it can cancel it");
                    }
                    return new WalletCancellationReply(await ledger.CancelAsync(cancel.PaymentId), ledger.MarketUrlOf(cancel.PaymentId));
                case WalletConfirmRequest confirm:
                    return new WalletCreditedReply(await ledger.ApplyConfirmationAsync(confirm.Confirmation));
                case WalletMailRequest:
                    if (MailWait(context.DeviceId) is { } wait)
                    {
                        return HandlerResult.Error(ErrorCode.Refused,
                            $"this device had the payment log mailed less than a minute ago; ask again in {Math.Ceiling(wait.TotalSeconds)} s (the periodic report comes as well)");
                    }
                    var (sent, pending) = await reports.MailNowAsync(context.Closed);
                    return new WalletMailedReply(sent, pending);
                default:
                    return HandlerResult.Error(ErrorCode.UnknownRequest, $"the home server does not know request '{request.Type}'");
            }
        }
        catch (Policy.PolicyRefusedException e)
        {
            await devices.AuditAsync(context.DeviceId, request.Type, null, null, e.AuditOutcome);
            return HandlerResult.Error(ErrorCode.PolicyRefused, await policies.ReplyAsync(e, context.DeviceId, context.Closed));
        }
        catch (PurseException e)
        {
            return HandlerResult.Error(e.Refusal == PurseRefusal.Conflict ? ErrorCode.Conflict : ErrorCodes.FromWire("purse-" + e.Refusal.ToString().ToLowerInvariant()), e.Message);
        }
        catch (Exception e) when (e is System.Formats.Cbor.CborContentException or System.Security.Cryptography.CryptographicException or ArgumentException or FormatException)
        {
            // Whatever a market or bank sent that is not a money message is refused as such (and logged as a refusal), never an internal fault.
            return HandlerResult.Error(ErrorCode.PurseMalformed, $"what the terminal passed on is not a signed money message: {e.Message}");
        }
        catch (CardNotReadyException e)
        {
            return HandlerResult.Error(ErrorCode.CardNotReady, e.Message);
        }
    }
}
