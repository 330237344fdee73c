using Daiko.Home.Appliances;
using Daiko.Home.Devices;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Handlers;

/// <summary>F16: remote control of, and readings from, home appliances; only the home server reaches them.</summary>
/// The device's policy names the appliances it may see and control; any other is refused and audited.
public sealed class ApplianceHandler(ApplianceGateway appliances, DeviceRegistry devices, Policy.DevicePolicies policies)
{
    public async Task<HandlerResult> ListAsync(RequestContext context)
    {
        var (policy, _) = await policies.ForDeviceAsync(context.DeviceId, context.Closed);
        return new AppliancesReply((await appliances.ListAsync(context.Closed)).Select(a => a.Name).Where(policy.AllowsAppliance).ToList());
    }

    public async Task<HandlerResult> ReadingsAsync(ApplianceReadingsRequest request, RequestContext context) =>
        await RefusalAsync("appliance-readings", request.Name, context) is { } refused ? refused
        // The newest that fit in a page: a thousand readings of large states would not fit in a frame.
        : new ApplianceReadingsReply(ReplyPage.Take((await appliances.ReadingsAsync(request.Name, request.Limit, context.Closed)).Select(r => $"{r.At:O} {r.State}"), ReplyPage.Size).Items);

    public async Task<HandlerResult> StateAsync(ApplianceStateRequest request, RequestContext context) =>
        await RefusalAsync("appliance-state", request.Name, context) is { } refused ? refused
        : await AnswerAsync("appliance-state", request.Name, await appliances.GetStateAsync(request.Name, context.Closed), context);

    /// <summary>Null when the device's policy lets it use the appliance; else the audited refusal.</summary>
    private async Task<HandlerResult?> RefusalAsync(string action, string name, RequestContext context)
    {
        var (policy, _) = await policies.ForDeviceAsync(context.DeviceId, context.Closed);
        if (policy.AllowsAppliance(name)) return null;
        var e = new Policy.PolicyRefusedException(Policy.PolicyRule.Appliances,
            $"this device may not use the appliance '{name}' (its appliances: {policy.AppliancesText})", new Policy.PolicyRemedy("allow it", "--appliances"));
        await devices.AuditAsync(context.DeviceId, action, name, null, e.AuditOutcome, context.Closed);
        return HandlerResult.Error(ErrorCode.PolicyRefused, await policies.ReplyAsync(e, context.DeviceId, context.Closed));
    }

    public async Task<HandlerResult> CommandAsync(ApplianceCommandRequest request, RequestContext context)
    {
        if (await RefusalAsync("appliance-command", request.Name, context) is { } refused) return refused;
        var arguments = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in request.Arguments) arguments[key] = value;
        return await AnswerAsync("appliance-command", request.Name, await appliances.SendCommandAsync(request.Name, request.Command, arguments, context.Closed), context);
    }

    private async Task<HandlerResult> AnswerAsync(string action, string name, ApplianceResult result, RequestContext context)
    {
        await devices.AuditAsync(context.DeviceId, action, name, null, result.Outcome.ToString());
        return result.Outcome switch
        {
            ApplianceOutcome.Done => new ApplianceStateReply(result.State ?? ""),
            ApplianceOutcome.UnknownAppliance => HandlerResult.Error(ErrorCode.ApplianceUnknownAppliance, result.Reason ?? "the appliance did not do it"),
            ApplianceOutcome.Unreachable => HandlerResult.Error(ErrorCode.ApplianceUnreachable, result.Reason ?? "the appliance did not do it"),
            _ => HandlerResult.Error(ErrorCode.ApplianceRefused, result.Reason ?? "the appliance did not do it"),
        };
    }
}
