using Daiko.Cards;
using Daiko.Home.Authority;
using Daiko.Home.Devices;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Tls;
using Daiko.Tls.Handshake;

namespace Daiko.Home.Handlers;

/// <summary>
/// Assist mode: the home card signs the terminal's CertificateVerify, the home server judges the
/// market's chain. The signer is bounded (<see cref="AssistGrants"/>): one signature, inside an approved
/// <c>delegate assist</c> for a named market whose chain this server verified for the device, within
/// 30 s, over CertificateVerify content it computed itself from a handshake it checked for that market
/// (<see cref="AssistTranscript13"/>, <see cref="Daiko.Tls.Tls12.AssistTranscript12"/>); the audit line
/// names the market. The device's policy must allow assist.
/// </summary>
public sealed class AssistHandler(CardGate gate, DeviceRegistry devices, IServerCertificateValidator marketValidator, AssistGrants grants, Policy.DevicePolicies policies)
{
    public async Task<HandlerResult> SignAsync(SignRequest request, RequestContext context)
    {
        if (gate.RefusalUnlessReady() is { } refusal) return refusal;
        if (await RefusalUnlessAssistAllowedAsync("sign", context) is { } forbidden) return forbidden;
        var (market, serverName, outside) = grants.Consume(context.DeviceId);
        if (outside is not null)
        {
            await devices.AuditAsync(context.DeviceId, "sign", null, "assist", "refused: " + outside);
            return HandlerResult.Error(ErrorCode.Refused, outside);
        }
        // The card signs only a TLS 1.3 client CertificateVerify for a handshake this server parsed and
        // checked itself (the terminal sends its messages; the content is computed here from them), or a
        // whole TLS 1.2 handshake checked likewise (a TLS 1.2 CertificateVerify has no context string);
        // never a hash or other bytes as handed over.
        var validator = new GrantedMarketOnly(serverName!, marketValidator);
        byte[] content;
        string? problem;
        if (AssistTranscript13.IsClientVerifyContent(request.Content))
        {
            if (request.Transcript is null)
            {
                await devices.AuditAsync(context.DeviceId, "sign", market, "assist", "refused: TLS 1.3 content without its handshake");
                return HandlerResult.Error(ErrorCode.BadContent,
                    "the home card signs TLS 1.3 CertificateVerify content only with the handshake it is for, and this terminal sent none: update the terminal");
            }
            (var computed, problem) = await AssistTranscript13.CheckAsync(request.Transcript, request.Scheme, gate.Card.CertificateChain, validator, context.Closed);
            if (problem is null && !computed.AsSpan().SequenceEqual(request.Content)) problem = "the content is not the CertificateVerify content of the handshake sent with it";
            content = computed!;
        }
        else
        {
            content = request.Content;
            problem = await Daiko.Tls.Tls12.AssistTranscript12.CheckAsync(content, request.Scheme, gate.Card.CertificateChain, validator, context.Closed);
        }
        if (problem is not null)
        {
            await devices.AuditAsync(context.DeviceId, "sign", market, "assist", "refused: not CertificateVerify content");
            return HandlerResult.Error(ErrorCode.BadContent, $"the home card signs only TLS 1.3 client CertificateVerify content or a TLS 1.2 handshake it checked: {problem}");
        }
        try
        {
            context.Closed.ThrowIfCancellationRequested();
            var signature = await gate.Card.TlsSigner.SignAsync(request.Scheme, content, context.Closed);
            await devices.AuditAsync(context.DeviceId, "sign", market, "assist", "signed");
            return new SignatureReply(signature);
        }
        catch (Exception e) when (e is NotSupportedException or CardNotReadyException or OperationCanceledException)
        {
            return HandlerResult.Error(e is OperationCanceledException ? ErrorCode.Locked : ErrorCode.SignFailed,
                e is OperationCanceledException ? DeviceAuthority.NoOwnSession : e.Message);
        }
    }

    /// <summary>
    /// The home server's verdict on a market's chain: part of assist, so a device whose policy does not
    /// allow assist is refused, and so is a name its market list cannot allow (the verdict costs a chain
    /// validation, and may fetch a missing intermediate; and it is worth nothing for a market the device may
    /// not use).
    /// </summary>
    public async Task<HandlerResult> VerifyChainAsync(VerifyChainRequest request, RequestContext context)
    {
        // The market is judged under its one spelling (an internationalized name in its ASCII form), as a delegation's is;
        // a request that names none is judged as a name no entry lists, so only a list that may allow any name lets it by
        // (any public market, or an address entry, which allows whatever name leads there).
        var market = string.IsNullOrWhiteSpace(request.Host) ? "" : Delegation.MarketRequest.CanonicalHost(request.Host);
        if (await RefusalUnlessAssistAllowedAsync("verify-chain", context, market) is { } forbidden) return forbidden;
        var verdict = await marketValidator.ValidateAsync(request.Host, request.Chain, context.Closed);
        grants.ChainVerdict(context.DeviceId, request.Host, verdict.Trusted);
        return new VerdictReply(verdict.Trusted, verdict.Problem, verdict.Reason);
    }

    /// <summary>
    /// A refusal, audited under <paramref name="action"/>, when the device's policy does not allow assist, or (with a
    /// <paramref name="market"/> name) when its market list cannot allow that name on any port; null when it does.
    /// </summary>
    private async Task<HandlerResult?> RefusalUnlessAssistAllowedAsync(string action, RequestContext context, string? market = null)
    {
        var (policy, _) = await policies.ForDeviceAsync(context.DeviceId, context.Closed);
        var e = !policy.Modes.Contains(DelegationMode.Assist) ? Policy.ModeChoice.Forbidden(DelegationMode.Assist, policy.Modes)
            : market is not null && !policy.MayNameMarket(market) ? new Policy.PolicyRefusedException(Policy.PolicyRule.Markets, market.Length == 0
                ? $"this device gets chain verdicts only for a market it names (its markets: {policy.MarketsText})"
                : $"this device may not use the market {market} (its markets: {policy.MarketsText})", market.Length == 0 ? null : new Policy.PolicyRemedy("allow it", "--markets"))
            : null;
        if (e is null) return null;
        await devices.AuditAsync(context.DeviceId, action, string.IsNullOrEmpty(market) ? null : market, "assist", e.AuditOutcome);
        return HandlerResult.Error(ErrorCode.PolicyRefused, await policies.ReplyAsync(e, context.DeviceId, context.Closed));
    }

    /// <summary>A handshake (TLS 1.3 or 1.2) is signed for only when it names the granted market.</summary>
    private sealed class GrantedMarketOnly(string serverName, IServerCertificateValidator inner) : IServerCertificateValidator
    {
        public ValueTask<CertificateVerdict> ValidateAsync(string? name, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken) =>
            AssistGrants.Names(serverName, name)
                ? inner.ValidateAsync(serverName, chain, cancellationToken)
                : ValueTask.FromResult(CertificateVerdict.Fail(CertificateProblem.Other, $"the handshake names {name}, not the market of this assist ({serverName})"));
    }
}
