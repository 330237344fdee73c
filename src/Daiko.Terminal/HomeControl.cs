using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Terminal;

/// <summary>
/// The terminal's requests to the home server that are not sessions or money: the home card,
/// appliances (F16) and PIM sync (F17). The CLI calls these; it never builds protocol messages.
/// </summary>
public sealed class HomeControl(ControlConnection control)
{
    public async Task<CardState> UnlockAsync(string pin1, string pin2, CancellationToken cancellationToken) =>
        (await control.RequestAsync<UnlockedReply>(new UnlockRequest(pin1, pin2), cancellationToken)).State;

    /// <summary>"Done": the home card goes back to remote-access-wait.</summary>
    public async Task<CardState> LockAsync(CancellationToken cancellationToken) =>
        (await control.RequestAsync<LockedReply>(new LockRequest(), cancellationToken)).State;

    public Task<CardStatusReply> CardStatusAsync(CancellationToken cancellationToken) =>
        control.RequestAsync<CardStatusReply>(new CardStatusRequest(), cancellationToken);

    public async Task<IReadOnlyList<string>> AppliancesAsync(CancellationToken cancellationToken) =>
        (await control.RequestAsync<AppliancesReply>(new ApplianceListRequest(), cancellationToken)).Names;

    public async Task<string> ApplianceStateAsync(string name, CancellationToken cancellationToken) =>
        (await control.RequestAsync<ApplianceStateReply>(new ApplianceStateRequest(name), cancellationToken)).State;

    public async Task<string> ApplianceCommandAsync(string name, string command, IReadOnlyList<KeyValuePair<string, string>> arguments, CancellationToken cancellationToken) =>
        (await control.RequestAsync<ApplianceStateReply>(new ApplianceCommandRequest(name, command, arguments), cancellationToken)).State;

    public async Task<IReadOnlyList<string>> ApplianceReadingsAsync(string name, int limit, CancellationToken cancellationToken) =>
        (await control.RequestAsync<ApplianceReadingsReply>(new ApplianceReadingsRequest(name, limit), cancellationToken)).Readings;

    /// <summary>What this connection to the terminal agent cost on the agent's control channel so far (--stats).</summary>
    public Task<CostReply> AgentCostAsync(CancellationToken cancellationToken) =>
        control.RequestAsync<CostReply>(new CostRequest(), cancellationToken);

    /// <summary>
    /// A sync that sends no horizon: the home server never answers it with a reset, so a terminal that keeps a copy of
    /// the items and may fall behind marks that went should use the overload with the horizon.
    /// </summary>
    public Task<PimSyncedReply> PimSyncAsync(long since, IReadOnlyList<PimEntryChange> changes, CancellationToken cancellationToken) =>
        control.RequestAsync<PimSyncedReply>(new PimSyncRequest(since, changes), cancellationToken);

    /// <param name="horizon">the <see cref="PimSyncedReply.Horizon"/> of the last reply (0 before any); see <see cref="PimSyncedReply.Reset"/>.</param>
    public Task<PimSyncedReply> PimSyncAsync(long since, IReadOnlyList<PimEntryChange> changes, long horizon, CancellationToken cancellationToken) =>
        control.RequestAsync<PimSyncedReply>(new PimSyncRequest(since, changes, horizon), cancellationToken);
}
