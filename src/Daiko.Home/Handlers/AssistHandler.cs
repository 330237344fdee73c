using System.Text;
using Daiko.Cards;
using Daiko.Home.Authority;
using Daiko.Home.Devices;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Tls;

namespace Daiko.Home.Handlers;

/// <summary>
/// Assist mode: the home card signs the terminal's CertificateVerify, the home server judges the
/// market's chain. The signer is bounded (<see cref="AssistGrants"/>): one signature, inside an approved
/// <c>delegate assist</c> for a named market whose chain this server verified for the device, within
/// 30 s, over CertificateVerify content only; the audit line names the market. The device's policy
/// must allow assist.
/// </summary>
public sealed class AssistHandler(CardGate gate, DeviceRegistry devices, IServerCertificateValidator marketValidator, AssistGrants grants, Policy.DevicePolicies policies)
{
    private static readonly byte[] ClientVerifyPrefix = [.. Enumerable.Repeat((byte)0x20, 64), .. Encoding.ASCII.GetBytes("TLS 1.3, client CertificateVerify"), 0];

    public async Task<HandlerResult> SignAsync(SignRequest request, RequestContext context)
    {
        if (gate.RefusalUnlessReady() is { } refusal) return refusal;
        var (policy, _) = await policies.ForDeviceAsync(context.DeviceId, context.Closed);
        if (!policy.Modes.Contains(DelegationMode.Assist))
        {
            var e = Policy.ModeChoice.Forbidden(DelegationMode.Assist, policy.Modes);
            await devices.AuditAsync(context.DeviceId, "sign", null, "assist", e.AuditOutcome);
            return HandlerResult.Error(ErrorCode.PolicyRefused, e.Reply);
        }
        var (market, serverName, outside) = grants.Consume(context.DeviceId);
        if (outside is not null)
        {
            await devices.AuditAsync(context.DeviceId, "sign", null, "assist", "refused: " + outside);
            return HandlerResult.Error(ErrorCode.Refused, outside);
        }
        var content = request.Content;
        // The card signs only TLS 1.3 client CertificateVerify content, or a whole TLS 1.2 handshake that
        // this server parsed and checked itself for the granted market (a TLS 1.2 CertificateVerify has no
        // context string); never arbitrary data.
        var tls13 = content.Length is >= 64 + 34 + 32 and <= 64 + 34 + 64 && content.AsSpan().StartsWith(ClientVerifyPrefix);
        var problem = tls13 ? null : await Daiko.Tls.Tls12.AssistTranscript12.CheckAsync(content, request.Scheme, gate.Card.CertificateChain,
            new GrantedMarketOnly(serverName!, marketValidator), context.Closed);
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

    public async Task<HandlerResult> VerifyChainAsync(VerifyChainRequest request, RequestContext context)
    {
        var verdict = await marketValidator.ValidateAsync(request.Host, request.Chain, context.Closed);
        grants.ChainVerdict(context.DeviceId, request.Host, verdict.Trusted);
        return new VerdictReply(verdict.Trusted, verdict.Problem, verdict.Reason);
    }

    /// <summary>A TLS 1.2 transcript is signed only when it names the granted market.</summary>
    private sealed class GrantedMarketOnly(string serverName, IServerCertificateValidator inner) : IServerCertificateValidator
    {
        public ValueTask<CertificateVerdict> ValidateAsync(string? name, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken) =>
            string.Equals(name, serverName, StringComparison.OrdinalIgnoreCase)
                ? inner.ValidateAsync(name, chain, cancellationToken)
                : ValueTask.FromResult(CertificateVerdict.Fail(CertificateProblem.Other, $"the handshake names {name}, not the market of this assist ({serverName})"));
    }
}
