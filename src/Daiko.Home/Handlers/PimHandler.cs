using Daiko.Home.Pim;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Handlers;

/// <summary>F17: two-way PIM sync, newer items paged (a reply never nears the frame limit).</summary>
public sealed class PimHandler(PimStore pim)
{
    public async Task<HandlerResult> SyncAsync(PimSyncRequest request, RequestContext context)
    {
        var changes = request.Changes.Select(x => new PimChange(x.Id, (PimKind)x.Kind, x.BaseVersion, x.Delete, x.Body)).ToList();
        var result = await pim.SyncAsync(request.Since, changes, Daiko.Protocol.ControlProtocol.PageBytes, request.Horizon, context.Closed);
        return new PimSyncedReply(result.Revision,
            result.Results.Select(r => new PimEntryResult(r.Id, (PimEntryOutcome)r.Outcome, r.Reason, r.Current?.Version ?? 0)).ToList(),
            result.Changes.Select(i => new PimEntry(i.Id, (PimEntryKind)i.Kind, i.Version, i.Deleted, i.Body)).ToList(),
            result.More, result.Horizon, result.Reset);
    }
}
