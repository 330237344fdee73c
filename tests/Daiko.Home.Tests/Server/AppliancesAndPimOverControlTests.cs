using Daiko.Home.Pim;
using System.Net;
using Daiko.Cards;
using Daiko.Home.Appliances;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Samples.Appliances;
using Daiko.Terminal;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>F16 and F17 from a terminal, over the encrypted control channel, gated by the home card.</summary>
[Collection("home card")]
public sealed class AppliancesAndPimOverControlTests : IAsyncLifetime
{
    private HomeFixture _home = null!;
    private SampleThermostat _thermostat = null!;
    private ControlConnection _control = null!;
    private AccessCard _access = null!;

    public async Task InitializeAsync()
    {
        _home = HomeFixture.Start(o => o with { PimLimits = new PimLimits(MaxItems: 1_000, MaxBodyBytes: 100_000) });
        _thermostat = await SampleThermostat.StartAsync(IPAddress.Loopback);
        await _home.Server.Appliances.RegisterAsync(new Appliance("living-room", _thermostat.Endpoint));
        var terminal = Path.Combine(_home.Dir.Path, "terminal");
        await TerminalClient.EnrollAsync(terminal, _home.Endpoint, await _home.NewCodeAsync("tablet"), HomeFixture.AccessPin, createAccessCard: HomeFixture.TestAccessCard);
        _access = AccessCard.Open(terminal);
        _access.Unlock(HomeFixture.AccessPin);
        _control = await TerminalClient.ConnectAsync(terminal, _access.DeviceKey, CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _control.DisposeAsync();
        _access.Dispose();
        await _thermostat.DisposeAsync();
        await _home.DisposeAsync();
    }

    private HomeControl Home => new(_control);

    private Task UnlockAsync() => Home.UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, CancellationToken.None);

    [Fact]
    public async Task ApplianceCommand_IsRefusedUntilUnlock_ThenReachesTheAppliance()
    {
        var locked = await Assert.ThrowsAsync<ControlErrorException>(() => Home.AppliancesAsync(CancellationToken.None));
        Assert.Equal(ErrorCode.CardNotReady, locked.Code);
        await UnlockAsync();

        Assert.Equal(["living-room"], await Home.AppliancesAsync(CancellationToken.None));
        var state = await Home.ApplianceCommandAsync("living-room", "set-target", [KeyValuePair.Create("celsius", "24")], CancellationToken.None);
        Assert.Contains("\"target_celsius\":24", state, StringComparison.Ordinal);

        var refused = await Assert.ThrowsAsync<ControlErrorException>(() => Home.ApplianceCommandAsync("living-room", "self-destruct", [], CancellationToken.None));
        Assert.Equal(ErrorCode.ApplianceRefused, refused.Code);
        Assert.NotEmpty(await Home.ApplianceReadingsAsync("living-room", 20, CancellationToken.None));
    }

    [Fact]
    public async Task PimSync_StoresOnTheHomeServer_AndReportsConflicts()
    {
        await UnlockAsync();
        var first = await Home.PimSyncAsync(0, [new PimEntryChange("c1", PimEntryKind.Contact, 0, false, "{\"name\":\"Bob\"}")], CancellationToken.None);
        Assert.Equal(PimEntryOutcome.Applied, first.Results[0].Outcome);

        var stale = await Home.PimSyncAsync(0, [new PimEntryChange("c1", PimEntryKind.Contact, 0, false, "{\"name\":\"Robert\"}")], CancellationToken.None);
        Assert.Equal(PimEntryOutcome.Conflict, stale.Results[0].Outcome);
        var change = Assert.Single(stale.Changes);
        Assert.Contains("Bob", change.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PimSync_PastTheOwnersLimit_IsRejectedWithAReason_NothingStored_AndADeleteMakesRoom()
    {
        await UnlockAsync();
        var body = "{\"note\":\"" + new string('x', 60_000) + "\"}";
        var first = await Home.PimSyncAsync(0, [new PimEntryChange("big-1", PimEntryKind.Contact, 0, false, body)], CancellationToken.None);
        Assert.Equal(PimEntryOutcome.Applied, Assert.Single(first.Results).Outcome);

        var full = await Home.PimSyncAsync(first.Revision, [new PimEntryChange("big-2", PimEntryKind.Contact, 0, false, body)], CancellationToken.None);
        var refused = Assert.Single(full.Results);
        Assert.Equal(PimEntryOutcome.Rejected, refused.Outcome);
        Assert.Contains("the PIM store is full", refused.Reason, StringComparison.Ordinal);
        Assert.Equal(first.Revision, full.Revision);

        var freed = await Home.PimSyncAsync(full.Revision, [new PimEntryChange("big-1", PimEntryKind.Contact, 1, true, "")], CancellationToken.None);
        Assert.Equal(PimEntryOutcome.Applied, Assert.Single(freed.Results).Outcome);
        var again = await Home.PimSyncAsync(freed.Revision, [new PimEntryChange("big-2", PimEntryKind.Contact, 0, false, body)], CancellationToken.None);
        Assert.Equal(PimEntryOutcome.Applied, Assert.Single(again.Results).Outcome);
        var cleared = await Home.PimSyncAsync(again.Revision, [new PimEntryChange("big-2", PimEntryKind.Contact, 1, true, "")], CancellationToken.None);
        Assert.Equal(PimEntryOutcome.Applied, Assert.Single(cleared.Results).Outcome);
    }

    [Fact]
    public async Task PimSync_ItemsCreatedAndDeletedToTheOwnersLimit_LeaveRoomForNewOnes_AndATerminalBehindTheirMarksStartsAgain()
    {
        await UnlockAsync();
        var ids = Enumerable.Range(0, 999).Select(i => $"t{i:000}").ToList();
        var kept = await Home.PimSyncAsync(0, [new PimEntryChange("keep", PimEntryKind.Todo, 0, false, "{}")], CancellationToken.None);
        var created = await Home.PimSyncAsync(kept.Revision, ids.Select(id => new PimEntryChange(id, PimEntryKind.Todo, 0, false, "{}")).ToList(), CancellationToken.None);
        Assert.All(created.Results, r => Assert.Equal(PimEntryOutcome.Applied, r.Outcome));
        // The office syncs now: it holds all 1,000 (the owner's limit here).
        var office = await SyncAllAsync(0, 0);
        Assert.Equal(1_000, office.Live.Count);
        // A device deletes the 999: their marks fill the rows.
        var deleted = await Home.PimSyncAsync(created.Revision, ids.Select(id => new PimEntryChange(id, PimEntryKind.Todo, 1, true, "")).ToList(), CancellationToken.None);
        Assert.All(deleted.Results, r => Assert.Equal(PimEntryOutcome.Applied, r.Outcome));

        // A new item is taken: the oldest marks (a hundredth of the rows) make room, and the reply says how far.
        var added = await Home.PimSyncAsync(deleted.Revision, [new PimEntryChange("new", PimEntryKind.Todo, 0, false, "{}")], CancellationToken.None);
        Assert.Equal(PimEntryOutcome.Applied, Assert.Single(added.Results).Outcome);
        // The ten oldest marks went (a hundredth of 1,000 rows): t000 to t009's, the revisions after the 999 creations.
        Assert.Equal(created.Revision + 10, added.Horizon);
        Assert.False(added.Reset);

        // The office had not seen the marks that went: it is told to start again, and ends up with what the store holds.
        var caughtUp = await SyncAllAsync(office.Revision, office.Horizon, office.Live);
        Assert.True(caughtUp.Reset);
        Assert.Equal(["keep", "new"], caughtUp.Live.Order());
        // With the horizon it was given, its next sync goes on from where it is.
        var next = await Home.PimSyncAsync(caughtUp.Revision, [], caughtUp.Horizon, CancellationToken.None);
        Assert.False(next.Reset);
        Assert.Empty(next.Changes);
    }

    /// <summary>
    /// What a terminal does: syncs page by page from <paramref name="since"/>, applying each page to what it holds,
    /// and on a reset drops what it holds and keeps only what the pages bring.
    /// </summary>
    private async Task<(long Revision, long Horizon, bool Reset, HashSet<string> Live)> SyncAllAsync(long since, long horizon, IEnumerable<string>? held = null)
    {
        var live = new HashSet<string>(held ?? [], StringComparer.Ordinal);
        var reset = false;
        PimSyncedReply reply;
        do
        {
            reply = await Home.PimSyncAsync(since, [], horizon, CancellationToken.None);
            if (reply.Reset)
            {
                reset = true;
                live.Clear();
            }
            foreach (var item in reply.Changes)
            {
                if (item.Deleted) live.Remove(item.Id);
                else live.Add(item.Id);
            }
            (since, horizon) = (reply.Revision, reply.Horizon);
        }
        while (reply.More);
        return (since, horizon, reset, live);
    }
}
