using Daiko.Home.Appliances;
using Daiko.Home.Devices;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Handlers;

/// <summary>F16: remote control of, and readings from, home appliances; only the home server reaches them.</summary>
public sealed class ApplianceHandler(ApplianceGateway appliances, DeviceRegistry devices)
{
    public async Task<HandlerResult> ListAsync(RequestContext context) => new AppliancesReply((await appliances.ListAsync(context.Closed)).Select(a => a.Name).ToList());

    public async Task<HandlerResult> ReadingsAsync(ApplianceReadingsRequest request, RequestContext context) =>
        new ApplianceReadingsReply((await appliances.ReadingsAsync(request.Name, request.Limit, context.Closed)).Select(r => $"{r.At:O} {r.State}").ToList());

    public async Task<HandlerResult> StateAsync(ApplianceStateRequest request, RequestContext context) =>
        await AnswerAsync("appliance-state", request.Name, await appliances.GetStateAsync(request.Name, context.Closed), context);

    public async Task<HandlerResult> CommandAsync(ApplianceCommandRequest request, RequestContext context)
    {
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
