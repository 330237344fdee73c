using System.Data.Common;
using Daiko.Home.Appliances;
using Daiko.Home.Devices;
using Daiko.Home.Pim;
using Daiko.Home.Policy;
using Daiko.Home.Storage;
using Daiko.TestSupport;
using Npgsql;
using Xunit;

namespace Daiko.Home.Tests.Storage;

/// <summary>
/// What every home store promises, repository by repository: one contract, run on SQLite files and on
/// a real PostgreSQL server. Market profiles have their own contract (MarketProfilesContract).
/// </summary>
public abstract class HomeStoreContract
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 1, 9, 0, 0, TimeSpan.Zero);

    /// <summary>A store on a fresh, empty database; every call for the same test returns a store on the same database.</summary>
    protected abstract IHomeStore Store();

    private static Device Device(string id, string name, DateTimeOffset? revoked = null) => new(id, name, [0x30, 0x59, (byte)id[0], 0x00, 0xff], T0, revoked);

    [Fact]
    public async Task Devices_RoundTrip_ByNameAndId_AndListInNameOrder()
    {
        var devices = Store().Devices;
        Assert.True(await devices.AddAsync(Device("bb01", "tablet")));
        Assert.True(await devices.AddAsync(Device("aa01", "phone")));

        var phone = await Store().Devices.FindByNameAsync("phone");
        Assert.NotNull(phone);
        Assert.Equal("aa01", phone.Id);
        Assert.Equal(Device("aa01", "phone").PublicKeyInfo, phone.PublicKeyInfo);
        Assert.Equal(T0, phone.EnrolledAt);
        Assert.Null(phone.RevokedAt);
        Assert.Equal("tablet", (await devices.FindByIdAsync("bb01"))?.Name);
        Assert.Null(await devices.FindByNameAsync("laptop"));
        Assert.Equal(["phone", "tablet"], (await devices.ListAsync()).Select(d => d.Name));
    }

    [Fact]
    public async Task Devices_ALiveNameOrKeyIsUnique_ARevokedOneIsReplaced()
    {
        var devices = Store().Devices;
        Assert.True(await devices.AddAsync(Device("aa01", "phone")));
        Assert.False(await devices.AddAsync(Device("aa02", "phone")));
        Assert.False(await devices.AddAsync(Device("aa01", "laptop")));
        Assert.Equal("aa01", Assert.Single(await devices.ListAsync()).Id);

        Assert.True(await devices.RevokeAsync("phone", T0.AddHours(1)));
        Assert.True(await devices.AddAsync(Device("aa02", "phone")));
        var phone = Assert.Single(await devices.ListAsync());
        Assert.Equal("aa02", phone.Id);
        Assert.False(phone.Revoked);
    }

    [Fact]
    public async Task Devices_RevokeOnce_AndOnlyLiveIdsAreListed_ARevokedOneReplacedByItsNameLeftOut()
    {
        var devices = Store().Devices;
        await devices.AddAsync(Device("aa01", "phone"));
        await devices.AddAsync(Device("bb01", "tablet"));

        Assert.True(await devices.RevokeAsync("phone", T0.AddHours(1)));
        Assert.False(await devices.RevokeAsync("phone", T0.AddHours(2)));
        Assert.False(await devices.RevokeAsync("laptop", T0.AddHours(2)));

        Assert.Equal(T0.AddHours(1), (await devices.FindByNameAsync("phone"))?.RevokedAt);
        Assert.Equal(["bb01"], await devices.LiveIdsAsync());
        // Enrolling the name again removes the revoked row: the revoked id is still not live.
        Assert.True(await devices.AddAsync(Device("cc01", "phone")));
        Assert.Null(await devices.FindByIdAsync("aa01"));
        Assert.Equal(["bb01", "cc01"], (await devices.LiveIdsAsync()).Order());
    }

    private static EnrollmentCodeRecord Code(string name, byte hash, DateTimeOffset expires) => new(name, Enumerable.Repeat(hash, 32).ToArray(), [1, 2, 3, hash], expires, false);

    [Fact]
    public async Task EnrollmentCodes_RoundTrip_AndANewCodeReplacesTheOldOne()
    {
        var codes = Store().EnrollmentCodes;
        await codes.PutAsync(Code("tablet", 7, T0.AddMinutes(10)));
        await codes.PutAsync(Code("phone", 1, T0.AddMinutes(10)));
        Assert.True(await codes.ConsumeAsync("phone", Code("phone", 1, T0).CodeHash));
        await codes.PutAsync(Code("phone", 2, T0.AddMinutes(20)));

        var all = await Store().EnrollmentCodes.ListAsync();
        Assert.Equal(["phone", "tablet"], all.Select(c => c.Name));
        var phone = all[0];
        Assert.Equal(Code("phone", 2, T0).CodeHash, phone.CodeHash);
        Assert.Equal(Code("phone", 2, T0).Salt, phone.Salt);
        Assert.Equal(T0.AddMinutes(20), phone.ExpiresAt);
        Assert.False(phone.Used);
        // The replaced code no longer redeems; the new one does, once.
        Assert.False(await codes.ConsumeAsync("phone", Code("phone", 1, T0).CodeHash));
        Assert.True(await codes.ConsumeAsync("phone", phone.CodeHash));
        Assert.False(await codes.ConsumeAsync("phone", phone.CodeHash));
        Assert.True((await codes.ListAsync())[0].Used);
    }

    [Fact]
    public async Task EnrollmentCodes_ACodeRedeemedByManyAtOnce_IsConsumedExactlyOnce()
    {
        await Store().EnrollmentCodes.PutAsync(Code("phone", 9, T0.AddMinutes(10)));
        using var start = new ManualResetEventSlim();
        var racers = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            start.Wait(TimeSpan.FromSeconds(10));
            return await Store().EnrollmentCodes.ConsumeAsync("phone", Code("phone", 9, T0).CodeHash);
        })).ToList();
        start.Set();

        var won = await Task.WhenAll(racers);
        Assert.Equal(1, won.Count(w => w));
    }

    [Fact]
    public async Task EnrollmentCodes_AreFoundByTheirPublicId_AndCodesWithoutOneTogether()
    {
        var codes = Store().EnrollmentCodes;
        await codes.PutAsync(Code("phone", 1, T0.AddMinutes(10)) with { PublicId = "AB12" });
        await codes.PutAsync(Code("tablet", 2, T0.AddMinutes(10)) with { PublicId = "CD34" });
        await codes.PutAsync(Code("old-laptop", 3, T0.AddMinutes(10)));
        await codes.PutAsync(Code("old-desktop", 4, T0.AddMinutes(10)));

        var phone = Assert.Single(await codes.ListByPublicIdAsync("AB12"));
        Assert.Equal(("phone", "AB12"), (phone.Name, phone.PublicId));
        Assert.Equal(Code("phone", 1, T0).CodeHash, phone.CodeHash);
        Assert.Empty(await codes.ListByPublicIdAsync("ZZ99"));
        Assert.Equal(["old-desktop", "old-laptop"], (await codes.ListByPublicIdAsync(null)).Select(c => c.Name));
        // A new code for a name takes the new id; the old id finds nothing.
        await codes.PutAsync(Code("phone", 5, T0.AddMinutes(20)) with { PublicId = "EF56" });
        Assert.Empty(await codes.ListByPublicIdAsync("AB12"));
        Assert.Equal("phone", Assert.Single(await codes.ListByPublicIdAsync("EF56")).Name);
    }

    [Fact]
    public async Task Audit_KeepsEveryField_NewestFirst_UpToTheLimit()
    {
        var audit = Store().Audit;
        await audit.AppendAsync(new AuditEntry(T0, "aa01", "unlock", null, null, "crypto-ready"));
        await audit.AppendAsync(new AuditEntry(T0, null, "enroll", null, null, "refused: UnknownCode"));
        await audit.AppendAsync(new AuditEntry(T0.AddSeconds(1), "aa01", "delegate", "m.test:443", "resume", "ticket handed over"));

        var recent = await Store().Audit.RecentAsync(2);
        Assert.Equal([new AuditEntry(T0.AddSeconds(1), "aa01", "delegate", "m.test:443", "resume", "ticket handed over"),
            new AuditEntry(T0, null, "enroll", null, null, "refused: UnknownCode")], recent);
        Assert.Equal(["delegate", "enroll", "unlock"], (await audit.RecentAsync(100)).Select(e => e.Action));
    }

    [Fact]
    public async Task AuditSearch_LooksThroughTheWholeLog_ByDeviceMarketAndOutcome_CaseAside_WildcardsLiterally()
    {
        var audit = Store().Audit;
        // The phone's one early line, then many newer ones of another device: the search still finds the early one.
        await audit.AppendAsync(new AuditEntry(T0, "phone-1", "delegate", "Shop.Example:443", "relay", "relayed"));
        await audit.AppendAsync(new AuditEntry(T0, "phone-1", "delegate", "bank.test:443", "handoff", "refused by policy (markets)"));
        await audit.AppendAsync(new AuditEntry(T0, null, "enroll", null, null, "refused: 100% wrong_code"));
        await Task.WhenAll(Enumerable.Range(0, 300).Select(_ => audit.AppendAsync(new AuditEntry(T0.AddSeconds(1), "till-2", "delegate", "m.test:443", "resume", "refused by policy (markets)"))));

        var (phone, phoneTotal) = await audit.SearchAsync(new AuditFilter(["phone-1"]), 0, 10);
        Assert.Equal(2, phoneTotal);
        Assert.Equal(["bank.test:443", "Shop.Example:443"], phone.Select(e => e.Market));
        var (shop, _) = await audit.SearchAsync(new AuditFilter(Market: "shop.EXAMPLE"), 0, 10);
        Assert.Equal("relayed", Assert.Single(shop).Outcome);
        // Both devices' refusals, the newest first, a page at a time; the total counts them all.
        var (refusals, refusalTotal) = await audit.SearchAsync(new AuditFilter(Outcome: "BY POLICY"), 295, 10);
        Assert.Equal(301, refusalTotal);
        Assert.Equal(["till-2", "till-2", "till-2", "till-2", "till-2", "phone-1"], refusals.Select(e => e.Device));
        // % and _ are the text's own, not wildcards.
        Assert.Equal(1, (await audit.SearchAsync(new AuditFilter(Outcome: "100% wrong_"), 0, 10)).Total);
        Assert.Equal(0, (await audit.SearchAsync(new AuditFilter(Outcome: "1%g"), 0, 10)).Total);
        Assert.Equal(0, (await audit.SearchAsync(new AuditFilter(Outcome: "wrong_c_de"), 0, 10)).Total);
        Assert.Equal(0, (await audit.SearchAsync(new AuditFilter([]), 0, 10)).Total);
        Assert.Equal(302, (await audit.SearchAsync(new AuditFilter(["phone-1", "till-2", "nobody"]), 0, 1)).Total);
    }

    [Fact]
    public async Task Pim_HoldsNoMoreThanItsLimits_ADeleteOrAShrinkIsAlwaysTaken_AndMakesRoom()
    {
        var pim = Store().Pim;
        var limits = new PimLimits(MaxItems: 3, MaxBodyBytes: 10);
        PimChange Put(string id, long version, string body) => new(id, PimKind.Contact, version, false, body);

        // "é" is two bytes: "b" holds four.
        var filled = await pim.SyncAsync(0, [Put("a", 0, "12345"), Put("b", 0, "éé"), Put("c", 0, "12")], T0, limits: limits);

        Assert.Equal([PimChangeOutcome.Applied, PimChangeOutcome.Applied, PimChangeOutcome.Rejected], filled.Results.Select(r => r.Outcome));
        Assert.Contains("at most 10 bytes in all", filled.Results[2].Reason, StringComparison.Ordinal);
        Assert.Equal(2, filled.Revision);
        // A shrink and a delete are taken; the delete keeps its row (the mark) but frees its bytes.
        var room = await pim.SyncAsync(2, [Put("b", 1, "é"), new PimChange("a", PimKind.Contact, 1, true, "")], T0, limits: limits);
        Assert.All(room.Results, r => Assert.Equal(PimChangeOutcome.Applied, r.Outcome));
        // A delete of what the store never held is taken too, and writes nothing: no row, no revision.
        var nothing = await Store().Pim.SyncAsync(4, [new PimChange("never", PimKind.Contact, 0, true, "")], T0, limits: limits);
        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(nothing.Results).Outcome);
        Assert.Equal(4, nothing.Revision);
        // "c" fits the bytes (2 + 8) and is the third row; "d", a fourth, takes the row of the mark "a" left.
        var third = await Store().Pim.SyncAsync(4, [Put("c", 0, "12345678"), Put("d", 0, "")], T0, limits: limits);
        Assert.Equal([PimChangeOutcome.Applied, PimChangeOutcome.Applied], third.Results.Select(r => r.Outcome));
        Assert.Equal(4, third.Horizon);
        // Three live items: a fourth, empty or not, has no row.
        var fourth = await Store().Pim.SyncAsync(6, [Put("e", 0, "")], T0, limits: limits);
        Assert.Contains("at most 3 items", Assert.Single(fourth.Results).Reason, StringComparison.Ordinal);
        // A growth past the bytes is refused with the item as it stands.
        var grow = await pim.SyncAsync(6, [Put("b", 2, "éé")], T0, limits: limits);
        var refused = Assert.Single(grow.Results);
        Assert.Equal(PimChangeOutcome.Rejected, refused.Outcome);
        Assert.Equal("é", refused.Current!.Body);
        Assert.Equal(["b", "c", "d"], (await pim.ListAsync(PimKind.Contact)).Select(i => i.Id));
    }

    /// <summary>A new contact whose body is its id.</summary>
    private static PimChange Put(string id) => new(id, PimKind.Contact, 0, false, id);

    /// <summary>The delete of a contact at its first version.</summary>
    private static PimChange Delete(string id) => new(id, PimKind.Contact, 1, true, "");

    [Fact]
    public async Task Pim_ANewItemPastTheRows_LetsGoOfTheOldestMark_AndATerminalThatHadNotSeenItStartsAgain()
    {
        var pim = Store().Pim;
        // A hundredth of 4 rows is less than one: one mark goes at a time.
        var limits = new PimLimits(MaxItems: 4, MaxBodyBytes: 1_000);

        await pim.SyncAsync(0, [Put("a"), Put("b"), Put("c")], T0, limits: limits);
        // The office syncs now: it holds a, b and c, at revision 3.
        var office = await pim.SyncAsync(0, [], T0, limits: limits);
        Assert.Equal((3, 0L, false), (office.Revision, office.Horizon, office.Reset));
        // The phone deletes a (revision 4) and b (5), and adds d (6): four rows, two of them marks.
        await pim.SyncAsync(3, [Delete("a"), Delete("b"), Put("d")], T0, limits: limits);

        // e would be a fifth row: the oldest mark (a's, revision 4) goes, and only it.
        var phone = await pim.SyncAsync(6, [Put("e")], T0, limits: limits);
        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(phone.Results).Outcome);
        Assert.Equal(7, phone.Revision);
        Assert.Equal(4, phone.Horizon);
        Assert.False(phone.Reset);

        // A caller that sends no horizon (a terminal from before them) is never told to start again: it could not act on it.
        Assert.False((await pim.SyncAsync(office.Revision, [], T0, limits: limits)).Reset);
        // The office never saw a's mark: it starts again from the first revision, and told so.
        var again = await Store().Pim.SyncAsync(office.Revision, [], T0, limits: limits, horizonSeen: office.Horizon);
        Assert.True(again.Reset);
        Assert.Equal(4, again.Horizon);
        Assert.Equal([("c", false), ("b", true), ("d", false), ("e", false)], again.Changes.Select(i => (i.Id, i.Deleted)));
        // a comes in none of the pages: the office drops it with every other item it holds that did not come,
        // and what it keeps is what the store holds.
        Assert.DoesNotContain(again.Changes, i => i.Id == "a");
        Assert.Equal((await pim.ListAsync(PimKind.Contact)).Select(i => i.Id), again.Changes.Where(i => !i.Deleted).Select(i => i.Id).Order());

        // Once it has the horizon, or had seen past it, nothing starts again.
        Assert.False((await pim.SyncAsync(again.Revision, [], T0, limits: limits, horizonSeen: again.Horizon)).Reset);
        var pastTheMark = await pim.SyncAsync(5, [], T0, limits: limits);
        Assert.False(pastTheMark.Reset);
        Assert.Equal(["d", "e"], pastTheMark.Changes.Select(i => i.Id));
        // A terminal from revision 0 reads everything there is: no reset to tell it of.
        Assert.False((await pim.SyncAsync(0, [], T0, limits: limits)).Reset);

        // b's mark makes room for f; then four live items fill the rows for good, and revisions never go back.
        var f = await pim.SyncAsync(7, [Put("f")], T0, limits: limits);
        Assert.Equal((PimChangeOutcome.Applied, 8L, 5L), (Assert.Single(f.Results).Outcome, f.Revision, f.Horizon));
        var g = await pim.SyncAsync(8, [Put("g")], T0, limits: limits);
        Assert.Contains("at most 4 items", Assert.Single(g.Results).Reason, StringComparison.Ordinal);
        var h = await pim.SyncAsync(8, [Delete("c"), Put("h")], T0, limits: limits);
        Assert.Equal([PimChangeOutcome.Applied, PimChangeOutcome.Rejected], h.Results.Select(r => r.Outcome));
        Assert.Equal(9, h.Revision);
    }

    [Fact]
    public async Task Pim_AMarkLetGoWhileASyncReadsItsPage_SendsThatSyncBackToTheFirstRevision()
    {
        var office = Store();
        var pim = office.Pim;
        var limits = new PimLimits(MaxItems: 4, MaxBodyBytes: 1_000);
        await pim.SyncAsync(0, [Put("a"), Put("b"), Put("c")], T0, limits: limits);
        await pim.SyncAsync(3, [Delete("a"), Delete("b"), Put("d")], T0, limits: limits);
        // The office last synced at revision 3 (it holds a, b and c). Between its sync's commit and its page read,
        // the phone adds e, which lets a's mark go.
        var phoneAdded = false;
        ((Daiko.Home.Storage.SqlPimStore)pim).BeforePageRead = async () =>
        {
            if (phoneAdded) return;
            phoneAdded = true;
            var added = await Store().Pim.SyncAsync(6, [Put("e")], T0, limits: limits);
            Assert.Equal(4, added.Horizon);
        };

        var synced = await pim.SyncAsync(3, [], T0, limits: limits, horizonSeen: 0);

        Assert.True(phoneAdded);
        // Read as it began (no mark gone), the page would have brought b's mark, d and e, and not a's: the office would
        // have kept a for good. It is sent back to the first revision instead.
        Assert.True(synced.Reset);
        Assert.Equal(4, synced.Horizon);
        Assert.Equal(["c", "d", "e"], synced.Changes.Where(i => !i.Deleted).Select(i => i.Id).Order());

        // a comes back (b's mark makes room): it starts at its revision, above any version a's old self had, so an edit
        // a stale terminal bases on the a it still holds (version 1) is a conflict, not applied to the new a.
        var back = await pim.SyncAsync(synced.Revision, [Put("a")], T0, limits: limits, horizonSeen: synced.Horizon);
        var recreated = Assert.Single(back.Results);
        Assert.Equal((PimChangeOutcome.Applied, 8L, 8L), (recreated.Outcome, recreated.Current!.Version, recreated.Current.Revision));
        var stale = await pim.SyncAsync(back.Revision, [new PimChange("a", PimKind.Contact, 1, false, "stale")], T0, limits: limits, horizonSeen: back.Horizon);
        Assert.Equal(PimChangeOutcome.Conflict, Assert.Single(stale.Results).Outcome);
        Assert.Equal("a", (await pim.ListAsync(PimKind.Contact)).Single(i => i.Id == "a").Body);
    }

    [Fact]
    public async Task Pim_MarksLetGoDuringEveryPageRead_GiveTheResultsBackWithNoPage_AndTheNextSyncIsJudgedAfresh()
    {
        var office = Store();
        var pim = office.Pim;
        var limits = new PimLimits(MaxItems: 8, MaxBodyBytes: 1_000);
        await pim.SyncAsync(0, Enumerable.Range(0, 8).Select(i => Put($"x{i}")).ToList(), T0, limits: limits);
        await pim.SyncAsync(8, Enumerable.Range(0, 4).Select(i => Delete($"x{i}")).ToList(), T0, limits: limits);
        // The office last synced at revision 8 (x0 to x7 live). Before each of its page reads the phone adds an item,
        // and each lets one of the oldest marks go: the horizon moves under all four reads.
        var added = 0;
        ((Daiko.Home.Storage.SqlPimStore)pim).BeforePageRead = async () =>
        {
            added++;
            var phone = await Store().Pim.SyncAsync(12, [Put($"n{added}")], T0, limits: limits);
            Assert.Equal(PimChangeOutcome.Applied, Assert.Single(phone.Results).Outcome);
        };

        var synced = await pim.SyncAsync(8, [new PimChange("x7", PimKind.Contact, 1, false, "edited")], T0, limits: limits, horizonSeen: 0);

        Assert.Equal(4, added);
        // The office's edit is committed and its result comes back; no page does, and it is told to sync again from where
        // it was with the horizon it had, so nothing it holds is taken for the store's.
        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(synced.Results).Outcome);
        Assert.Empty(synced.Changes);
        Assert.True(synced.More);
        Assert.False(synced.Reset);
        Assert.Equal((8L, 0L), (synced.Revision, synced.Horizon));

        ((Daiko.Home.Storage.SqlPimStore)pim).BeforePageRead = null;
        var again = await pim.SyncAsync(synced.Revision, [], T0, limits: limits, horizonSeen: synced.Horizon);
        Assert.True(again.Reset);
        Assert.Equal(["n1", "n2", "n3", "n4", "x4", "x5", "x6", "x7"], again.Changes.Where(i => !i.Deleted).Select(i => i.Id).Order());
        Assert.Equal("edited", again.Changes.Single(i => i.Id == "x7").Body);
    }

    [Fact]
    public async Task Pim_ItemsWrittenBeforeTheUsageWasKept_CountAgainstTheLimits_InBytes()
    {
        var store = Store();
        async Task InsertAsync(Daiko.Home.Storage.Migration upTo, string id, long revision, string body)
        {
            await using var connection = await store.OpenAsync(upTo);
            await Daiko.Home.Storage.StoreCommands.ExecuteAsync(connection, null,
                "INSERT INTO pim_items (id, kind, version, revision, deleted, body, modified_at) VALUES (@id, 0, 1, @r, 0, @body, '2026-01-01T00:00:00+00:00')",
                CancellationToken.None, ("@id", id), ("@r", revision), ("@body", body));
        }
        // One item before the usage row was made (it counts it), one after it but before its triggers (as a build
        // between the two wrote, uncounted): the triggers' step counts everything again.
        await InsertAsync(Daiko.Home.Storage.SqlPimStore.Migration, "old-1", 1, "12345");
        await InsertAsync(Daiko.Home.Storage.SqlPimStore.UsageMigration, "old-2", 2, "é");
        var limits = new PimLimits(MaxItems: 4, MaxBodyBytes: 10);

        // 7 bytes held: 4 more do not fit, 3 do; then the rows are full.
        var synced = await store.Pim.SyncAsync(2, [new PimChange("n1", PimKind.Contact, 0, false, "1234"), new PimChange("n2", PimKind.Contact, 0, false, "123"),
            new PimChange("n3", PimKind.Contact, 0, false, "")], T0, limits: limits);

        Assert.Equal([PimChangeOutcome.Rejected, PimChangeOutcome.Applied, PimChangeOutcome.Applied], synced.Results.Select(r => r.Outcome));
        var full = await store.Pim.SyncAsync(synced.Revision, [new PimChange("n4", PimKind.Contact, 0, false, "")], T0, limits: limits);
        Assert.Equal(PimChangeOutcome.Rejected, Assert.Single(full.Results).Outcome);

        // Written past the store's own code (as a node on older code would): still counted, both ways.
        await using (var connection = await store.OpenAsync())
        {
            await Daiko.Home.Storage.StoreCommands.ExecuteAsync(connection, null, "DELETE FROM pim_items WHERE id = 'old-1'", CancellationToken.None);
        }
        // 5 bytes and a row freed: "n4" fits again, and 5 bytes more.
        var freed = await store.Pim.SyncAsync(synced.Revision, [new PimChange("n4", PimKind.Contact, 0, false, "12345")], T0, limits: limits);
        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(freed.Results).Outcome);
        await using (var connection = await store.OpenAsync())
        {
            await Daiko.Home.Storage.StoreCommands.ExecuteAsync(connection, null, "UPDATE pim_items SET body = '' WHERE id = 'n4'", CancellationToken.None);
        }
        var grown = await store.Pim.SyncAsync(freed.Revision, [new PimChange("n2", PimKind.Contact, 1, false, "12345678")], T0, limits: limits);
        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(grown.Results).Outcome);
    }

    [Fact]
    public async Task Pim_AppliesInRevisionOrder_RefusesStaleEdits_AndReturnsWhatTheCallerHasNotSeen()
    {
        var pim = Store().Pim;
        var first = await pim.SyncAsync(0, [new PimChange("c1", PimKind.Contact, 0, false, "Ann"), new PimChange("t1", PimKind.Todo, 0, false, "milk")], T0);
        Assert.Equal(2, first.Revision);
        Assert.Equal([1L, 2L], first.Results.Select(r => r.Current!.Revision));
        Assert.Empty(first.Changes);

        var edit = await Store().Pim.SyncAsync(2, [new PimChange("c1", PimKind.Contact, 1, false, "Anne")], T0.AddMinutes(1));
        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(edit.Results).Outcome);
        var stale = await pim.SyncAsync(0, [new PimChange("c1", PimKind.Contact, 1, false, "Annie"), new PimChange("t1", PimKind.Todo, 1, true, "")], T0.AddMinutes(2));

        Assert.Equal(PimChangeOutcome.Conflict, stale.Results[0].Outcome);
        Assert.Equal("Anne", stale.Results[0].Current!.Body);
        Assert.Equal(2, stale.Results[0].Current!.Version);
        Assert.Equal(PimChangeOutcome.Applied, stale.Results[1].Outcome);
        Assert.Equal(4, stale.Revision);
        // What the caller did not write itself, in revision order: the contact (revision 3); the deleted to-do is its own.
        Assert.Equal("c1", Assert.Single(stale.Changes).Id);
        Assert.Equal(T0.AddMinutes(1), stale.Changes[0].ModifiedAt);
        Assert.Empty(await pim.ListAsync(PimKind.Todo));
        Assert.Equal("Anne", Assert.Single(await pim.ListAsync(PimKind.Contact)).Body);
        var tombstone = (await pim.SyncAsync(3, [], T0)).Changes.Single();
        Assert.True(tombstone.Deleted);
        Assert.Equal(2, tombstone.Version);
    }

    [Fact]
    public async Task Pim_ConcurrentSyncs_GetDistinctRevisions()
    {
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(() =>
            Store().Pim.SyncAsync(0, [new PimChange($"t{i}", PimKind.Todo, 0, false, $"task {i}")], T0))));

        Assert.Equal(Enumerable.Range(1, 8).Select(r => (long)r), results.Select(r => Assert.Single(r.Results).Current!.Revision).Order());
        Assert.Equal(8, (await Store().Pim.ListAsync(PimKind.Todo)).Count);
    }

    [Fact]
    public async Task MailOutbox_QueuesOncePerMessageId_InOrder_UntilSent()
    {
        var outbox = Store().MailOutbox;
        Assert.Null(await outbox.LastQueuedAsync());
        Assert.True(await outbox.EnqueueAsync("a@daiko.home", "alice@example.test", "log 1", "body 1", T0));
        Assert.True(await outbox.EnqueueAsync("b@daiko.home", "alice@example.test", "log 2", "body 2", T0.AddDays(1)));
        Assert.False(await outbox.EnqueueAsync("a@daiko.home", "bob@example.test", "again", "again", T0.AddDays(2)));
        // The newest queued, whatever was refused as a second copy: what the periodic report counts from.
        Assert.Equal(T0.AddDays(1), (await outbox.LastQueuedAsync())?.At);

        var pending = await Store().MailOutbox.PendingAsync();
        Assert.Equal(["a@daiko.home", "b@daiko.home"], pending.Select(m => m.MessageId));
        Assert.Equal(("alice@example.test", "log 1", "body 1", T0, 0), (pending[0].To, pending[0].Subject, pending[0].Body, pending[0].CreatedAt, pending[0].Attempts));

        await outbox.MarkAttemptAsync(pending.Select(m => m.Id));
        await outbox.MarkAttemptAsync([pending[1].Id]);
        await outbox.MarkSentAsync(pending[0].Id, T0.AddDays(3));

        var left = Assert.Single(await outbox.PendingAsync());
        Assert.Equal(("b@daiko.home", 2), (left.MessageId, left.Attempts));
        Assert.Equal(1, await outbox.PendingCountAsync());
        Assert.Equal((pending[1].Id, T0.AddDays(1)), await Store().MailOutbox.LastQueuedAsync());
    }

    [Fact]
    public async Task MailOutbox_AClaimedMail_IsHeldByItsClaimantUntilReleasedOrLapsed_AndASentOneByNobody()
    {
        var outbox = Store().MailOutbox;
        Assert.True(await outbox.EnqueueAsync("c@daiko.home", "alice@example.test", "log", "body", T0));
        var id = Assert.Single(await outbox.PendingAsync()).Id;

        Assert.True(await outbox.ClaimAsync(id, "node-a", T0, T0.AddMinutes(10)));
        // Another store instance, as another node would have: the claim is in the database.
        Assert.False(await Store().MailOutbox.ClaimAsync(id, "node-b", T0.AddMinutes(9), T0.AddMinutes(19)));
        Assert.True(await outbox.ClaimAsync(id, "node-a", T0.AddMinutes(1), T0.AddMinutes(11)));

        // Released after a failed send: the next sender takes it at once.
        await outbox.ReleaseAsync(id, "node-b");
        Assert.False(await outbox.ClaimAsync(id, "node-b", T0.AddMinutes(2), T0.AddMinutes(12)));
        await outbox.ReleaseAsync(id, "node-a");
        Assert.True(await outbox.ClaimAsync(id, "node-b", T0.AddMinutes(2), T0.AddMinutes(12)));

        // A claimant that died: its claim lapses.
        Assert.False(await outbox.ClaimAsync(id, "node-c", T0.AddMinutes(11), T0.AddMinutes(21)));
        Assert.True(await outbox.ClaimAsync(id, "node-c", T0.AddMinutes(13), T0.AddMinutes(23)));

        await outbox.MarkSentAsync(id, T0.AddMinutes(14));
        Assert.False(await outbox.ClaimAsync(id, "node-c", T0.AddMinutes(14), T0.AddMinutes(24)));
        Assert.False(await outbox.ClaimAsync(id, "node-d", T0.AddDays(1), T0.AddDays(2)));
        Assert.Empty(await outbox.PendingAsync());
    }

    [Fact]
    public async Task Appliances_RegisterIsAnUpsert_AndReadingsAreNewestFirstPerAppliance()
    {
        var appliances = Store().Appliances;
        await appliances.RegisterAsync(new Appliance("heater", new Uri("http://127.0.0.1:8081/")));
        await appliances.RegisterAsync(new Appliance("boiler", new Uri("http://127.0.0.1:8082/")));
        await appliances.RegisterAsync(new Appliance("heater", new Uri("http://127.0.0.1:8083/")));

        Assert.Equal([new Appliance("boiler", new Uri("http://127.0.0.1:8082/")), new Appliance("heater", new Uri("http://127.0.0.1:8083/"))], await Store().Appliances.ListAsync());
        Assert.Equal(new Uri("http://127.0.0.1:8083/"), (await appliances.FindAsync("heater"))?.Endpoint);
        Assert.Null(await appliances.FindAsync("fridge"));

        for (var i = 0; i < 5; i++) await appliances.RecordAsync(new ApplianceReading("heater", T0.AddMinutes(i), $$"""{"c":{{i}}}"""));
        await appliances.RecordAsync(new ApplianceReading("boiler", T0, """{"on":true}"""));

        Assert.Equal([$$"""{"c":4}""", $$"""{"c":3}"""], (await appliances.ReadingsAsync("heater", 2)).Select(r => r.State));
        Assert.Equal(T0.AddMinutes(4), (await appliances.ReadingsAsync("heater", 1))[0].At);
        Assert.Single(await appliances.ReadingsAsync("boiler", 10));

        // Each appliance keeps its newest readings only (a test's bound of 3), and leaves the others' alone.
        var bounded = new SqlApplianceStore(Store(), maxReadingsKept: 3);
        for (var i = 5; i < 9; i++) await bounded.RecordAsync(new ApplianceReading("heater", T0.AddMinutes(i), $$"""{"c":{{i}}}"""));
        Assert.Equal([$$"""{"c":8}""", $$"""{"c":7}""", $$"""{"c":6}"""], (await appliances.ReadingsAsync("heater", 100)).Select(r => r.State));
        Assert.Single(await appliances.ReadingsAsync("boiler", 10));
    }

    /// <summary>Holds the store's grouped commit open with a write of its own until <paramref name="release"/> is set.</summary>
    private static async Task<Task<int>> HoldTheCommitAsync(IHomeStore store, TaskCompletionSource release)
    {
        var inside = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var held = store.Writes.WriteAsync(async (_, _) =>
        {
            inside.SetResult();
            await release.Task;
            return 0;
        });
        await inside.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return held;
    }

    private static async Task UntilWaitingAsync(IHomeStore store, int count)
    {
        for (var i = 0; i < 3000 && store.Writes.Waiting < count; i++) await Task.Delay(10);
        Assert.Equal(count, store.Writes.Waiting);
    }

    [Fact]
    public async Task AuditAppends_MadeAtOnce_ShareOneCommit_AndNoneReturnsBeforeIt()
    {
        var store = Store();
        await store.Audit.AppendAsync(new AuditEntry(T0, null, "first", null, null, "x"));
        var before = store.Writes.Statistics;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var held = await HoldTheCommitAsync(store, release);
        var appends = Enumerable.Range(0, 20).Select(i => store.Audit.AppendAsync(new AuditEntry(T0.AddSeconds(i), "aa01", "delegate", null, null, $"n{i}"))).ToList();
        await UntilWaitingAsync(store, 20);

        Assert.All(appends, a => Assert.False(a.IsCompleted, "an append returned before its commit"));
        // (Read through this store: another one would first take the write lock to check its migrations.)
        Assert.Single(await store.Audit.RecentAsync(100));
        release.SetResult();
        await held;
        await Task.WhenAll(appends);

        // Another store (another process or node) reads all of them: they were committed when their appends returned.
        Assert.Equal(Enumerable.Range(0, 20).Select(i => $"n{i}").Reverse(), (await Store().Audit.RecentAsync(20)).Select(e => e.Outcome));
        var after = store.Writes.Statistics;
        Assert.Equal(2, after.Commits - before.Commits);
        Assert.Equal(21, after.Writes - before.Writes);
    }

    /// <summary>The setting that says whether a commit waits for the disk: SQLite's synchronous (1 NORMAL, 2 FULL), PostgreSQL's synchronous_commit.</summary>
    private static async Task<string> CommitSettingAsync(IHomeStore store, DbConnection connection, DbTransaction? transaction)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = store.Dialect == HomeDialect.Sqlite ? "PRAGMA synchronous" : "SHOW synchronous_commit";
        return Convert.ToString(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture)!;
    }

    [Fact]
    public async Task Bookkeeping_CommitsWithoutWaitingForTheDisk_WhileThePurseAndEveryOtherWriterWaitForIt()
    {
        var store = Store();
        await store.Audit.AppendAsync(new AuditEntry(T0, null, "first", null, null, "x"));
        var (relaxed, full) = store.Dialect == HomeDialect.Sqlite ? ("1", "2") : ("off", "on");
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(relaxed, await store.Writes.WriteAsync((c, tx) => CommitSettingAsync(store, c, tx)));
            // The handle just given back is never handed to a writer that must wait for the disk.
            await using (var other = await store.OpenAsync()) Assert.Equal(full, await CommitSettingAsync(store, other, null));
            using (var purse = store.Open()) Assert.Equal(full, await CommitSettingAsync(store, purse, null));
            await using (var other = await store.OpenAsync())
            await using (var transaction = await other.BeginTransactionAsync())
            {
                Assert.Equal(full, await CommitSettingAsync(store, other, transaction));
            }
        }
    }

    [Fact]
    public async Task AuditPrune_RemovesTheTooOld_AndBeyondTheNewestCount_OldestFirst_AcrossBatches()
    {
        var store = Store();
        await store.Audit.AppendAsync(new AuditEntry(T0, null, "first", null, null, "x"));
        // Lines appended in time order: one a minute from T0, more than a prune batch of them.
        var count = SqlAuditStore.PruneBatch + 1200;
        await store.Writes.WriteAsync(async (c, tx) =>
        {
            for (var i = 1; i < count; i++)
                await StoreCommands.ExecuteAsync(c, tx, "INSERT INTO audit(at, device, action, market, mode, outcome) VALUES(@t, NULL, 'a', NULL, NULL, @o)", CancellationToken.None,
                    ("@t", StoreCommands.Text(T0.AddMinutes(i))), ("@o", $"n{i}"));
            return 0;
        });

        // Nothing is old enough and the count is within the bound: nothing goes.
        Assert.Equal(new AuditPrune(0, 0), await store.Audit.PruneAsync(T0, keepAtMost: count, keepNewest: 0));
        // Older than T0 + 5,100 minutes (lines 0..5099): across the first batch, and stopping at the first line to keep.
        Assert.Equal(new AuditPrune(5100, 0), await store.Audit.PruneAsync(T0.AddMinutes(5100), keepAtMost: count, keepNewest: 0));
        var oldest = (await Store().Audit.RecentAsync(count)).Last();
        Assert.Equal("n5100", oldest.Outcome);
        // A clock set years ahead makes every line old: the newest keepNewest stay all the same.
        Assert.Equal(new AuditPrune(count - 5100 - 100, 0), await store.Audit.PruneAsync(T0.AddYears(30), keepAtMost: count, keepNewest: 100));
        Assert.Equal($"n{count - 100}", (await Store().Audit.RecentAsync(count)).Last().Outcome);
        // Beyond the newest 40, whatever their age (young ones too: they are counted as such).
        Assert.Equal(new AuditPrune(60, 60), await store.Audit.PruneAsync(T0, keepAtMost: 40, keepNewest: 1000));
        var kept = await Store().Audit.RecentAsync(count);
        Assert.Equal(Enumerable.Range(count - 40, 40).Select(i => $"n{i}").Reverse(), kept.Select(e => e.Outcome));
        Assert.Equal(new AuditPrune(0, 0), await store.Audit.PruneAsync(T0, keepAtMost: 40, keepNewest: 0));
        // And the log goes on from there.
        await store.Audit.AppendAsync(new AuditEntry(T0.AddDays(30), null, "after", null, null, "x"));
        Assert.Equal("after", (await Store().Audit.RecentAsync(1)).Single().Action);
    }

    [Fact]
    public async Task AGroupedWriteThatFails_FailsItsWholeCommit_AndNothingOfItIsKept()
    {
        var store = Store();
        await store.Audit.AppendAsync(new AuditEntry(T0, null, "first", null, null, "x"));
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var held = await HoldTheCommitAsync(store, release);
        var append = store.Audit.AppendAsync(new AuditEntry(T0, null, "second", null, null, "x"));
        var broken = store.Writes.WriteAsync((c, tx) => StoreCommands.ExecuteAsync(c, tx, "INSERT INTO no_such_table(x) VALUES (1)", CancellationToken.None));
        await UntilWaitingAsync(store, 2);
        release.SetResult();
        await held;

        await Assert.ThrowsAnyAsync<DbException>(() => broken);
        await Assert.ThrowsAnyAsync<DbException>(() => append);
        Assert.Equal(["first"], (await Store().Audit.RecentAsync(10)).Select(e => e.Action));
        await store.Audit.AppendAsync(new AuditEntry(T0, null, "third", null, null, "x"));
        Assert.Equal(["third", "first"], (await Store().Audit.RecentAsync(10)).Select(e => e.Action));
    }

    [Fact]
    public async Task Migrations_AreRecordedOnce_AndMigrateIsIdempotent()
    {
        var store = (HomeStore)Store();
        await store.MigrateAsync();
        await ((HomeStore)Store()).MigrateAsync();
        await store.Audit.AppendAsync(new AuditEntry(T0, null, "x", null, null, "y"));

        await using var connection = await store.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT id FROM schema_migrations ORDER BY id";
        var ids = new List<string>();
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync()) ids.Add(reader.GetString(0));
        }
        Assert.Equal(HomeStore.Migrations.Select(m => m.Id).Order(StringComparer.Ordinal), ids);
        Assert.Single(await Store().Audit.RecentAsync(10));
    }

    private const string Market = "m.test:443";

    /// <summary>Reserves a place for <paramref name="device"/> at <see cref="Market"/> and hands a ticket over that expires at <paramref name="expiresAt"/>.</summary>
    private static async Task HandAsync(ITicketHoldings holdings, DateTimeOffset expiresAt, int max = 3, string device = "dev", string market = Market)
    {
        await using var place = await holdings.ReserveAsync(device, market, max, CancellationToken.None);
        await place.HandedAsync(expiresAt, CancellationToken.None);
    }

    [Fact]
    public async Task Tickets_CountedInTheStore_AreOneCountForEveryProcessOnIt_UpToTheDevicesMax()
    {
        var clock = new ManualClock(T0);
        // Two processes on one database: two nodes serving the same owner's devices.
        var first = new StoredTicketHoldings(Store(), clock);
        var second = new StoredTicketHoldings(Store(), clock);
        await HandAsync(first, T0.AddMinutes(10));
        await HandAsync(second, T0.AddMinutes(20));
        Assert.Equal(1, await first.RoomForAsync("dev", Market, 3, CancellationToken.None));

        await using (var reserved = await second.ReserveAsync("dev", Market, 3, CancellationToken.None))
        {
            // A place reserved for a ticket on its way counts too, on the other process.
            var refused = await Assert.ThrowsAsync<PolicyRefusedException>(() => first.ReserveAsync("dev", Market, 3, CancellationToken.None));
            Assert.Equal(PolicyRule.MaxTickets, refused.Rule);
            Assert.Contains("3 unexpired ticket(s) for m.test:443", refused.Message, StringComparison.Ordinal);
            await Assert.ThrowsAsync<PolicyRefusedException>(() => first.RoomForAsync("dev", Market, 3, CancellationToken.None));
        }
        // Given back (no ticket came): the place is the first process's to take.
        await HandAsync(first, T0.AddMinutes(30));
        await Assert.ThrowsAsync<PolicyRefusedException>(() => second.ReserveAsync("dev", Market, 3, CancellationToken.None));
        // Per device, per market.
        await HandAsync(second, T0.AddMinutes(10), device: "tablet");
        await HandAsync(second, T0.AddMinutes(10), market: "other.test:443");

        // Each ticket counts until its own expiry.
        clock.Now = T0.AddMinutes(10);
        Assert.Equal(1, await second.RoomForAsync("dev", Market, 3, CancellationToken.None));
        await HandAsync(second, T0.AddMinutes(40));
        await Assert.ThrowsAsync<PolicyRefusedException>(() => first.ReserveAsync("dev", Market, 3, CancellationToken.None));
        clock.Now = T0.AddMinutes(30);
        Assert.Equal(2, await first.RoomForAsync("dev", Market, 3, CancellationToken.None));
    }

    [Fact]
    public async Task Tickets_ATicketCountedThatNeverReachedTheDevice_GivesItsPlaceBack_OnceEvenIfToldTwice()
    {
        var clock = new ManualClock(T0);
        var first = new StoredTicketHoldings(Store(), clock);
        var second = new StoredTicketHoldings(Store(), clock);
        await HandAsync(first, T0.AddMinutes(10), max: 2);
        var place = await first.ReserveAsync("dev", Market, 2, CancellationToken.None);
        await place.HandedAsync(T0.AddMinutes(10), CancellationToken.None);
        await place.DisposeAsync();
        await Assert.ThrowsAsync<PolicyRefusedException>(() => second.RoomForAsync("dev", Market, 2, CancellationToken.None));

        // Its reply could not be sent: the place is given back (after the place was disposed, as a request's ends first).
        await place.GiveBackAsync();
        await place.GiveBackAsync();
        Assert.Equal(1, await second.RoomForAsync("dev", Market, 2, CancellationToken.None));
    }

    [Fact]
    public async Task Tickets_ATicketInHandCountedInOneWrite_CountsUntilItsOwnExpiry_AndCanBeGivenBack()
    {
        var clock = new ManualClock(T0);
        var first = new StoredTicketHoldings(Store(), clock);
        var second = new StoredTicketHoldings(Store(), clock);
        // Past the placeholder's hold: a ticket in hand counts until its own expiry, with no record after it.
        await using (var inHand = await first.ReserveHandedAsync("dev", Market, 2, T0.AddMinutes(30), CancellationToken.None)) { }
        var given = await second.ReserveHandedAsync("dev", Market, 2, T0.AddMinutes(30), CancellationToken.None);
        await given.DisposeAsync();
        var refused = await Assert.ThrowsAsync<PolicyRefusedException>(() => first.ReserveHandedAsync("dev", Market, 2, T0.AddMinutes(30), CancellationToken.None));
        Assert.Equal(PolicyRule.MaxTickets, refused.Rule);
        clock.Now = T0 + StoredTicketHoldings.ReservedFor + TimeSpan.FromMinutes(1);
        await Assert.ThrowsAsync<PolicyRefusedException>(() => first.RoomForAsync("dev", Market, 2, CancellationToken.None));

        // It never reached the device: its place is given back.
        await given.GiveBackAsync();
        Assert.Equal(1, await first.RoomForAsync("dev", Market, 2, CancellationToken.None));
        clock.Now = T0.AddMinutes(30);
        Assert.Equal(2, await second.RoomForAsync("dev", Market, 2, CancellationToken.None));
    }

    [Fact]
    public async Task Tickets_ReservedAtOnceFromTwoProcesses_NeverPassTheMax()
    {
        var clock = new ManualClock(T0);
        var holdings = new[] { new StoredTicketHoldings(Store(), clock), new StoredTicketHoldings(Store(), clock) };
        var attempts = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => Task.Run(async () =>
        {
            try
            {
                await HandAsync(holdings[i % 2], T0.AddMinutes(10));
                return true;
            }
            catch (PolicyRefusedException)
            {
                return false;
            }
        })));
        Assert.Equal(3, attempts.Count(a => a));
        await Assert.ThrowsAsync<PolicyRefusedException>(() => holdings[0].RoomForAsync("dev", Market, 3, CancellationToken.None));
    }

    [Fact]
    public async Task Tickets_APlaceItsProcessNeverSettled_LapsesAfterItsHold_AndATicketHandedLaterStillCounts()
    {
        var clock = new ManualClock(T0);
        var died = new StoredTicketHoldings(Store(), clock);
        var other = new StoredTicketHoldings(Store(), clock);
        // A process that reserved and died: its place neither handed nor given back.
        _ = await died.ReserveAsync("dev", Market, 1, CancellationToken.None);
        await Assert.ThrowsAsync<PolicyRefusedException>(() => other.ReserveAsync("dev", Market, 1, CancellationToken.None));
        clock.Now = T0 + StoredTicketHoldings.ReservedFor;
        Assert.Equal(1, await other.RoomForAsync("dev", Market, 1, CancellationToken.None));

        // A ticket that came after its placeholder had lapsed and was swept still counts once handed over.
        var slow = await died.ReserveAsync("dev", Market, 2, CancellationToken.None);
        clock.Now += StoredTicketHoldings.ReservedFor;
        await HandAsync(other, clock.Now.AddMinutes(10), max: 2);
        await slow.HandedAsync(clock.Now.AddMinutes(10), CancellationToken.None);
        await slow.DisposeAsync();
        await Assert.ThrowsAsync<PolicyRefusedException>(() => other.ReserveAsync("dev", Market, 2, CancellationToken.None));
    }
}

public sealed class SqliteHomeStoreTests : HomeStoreContract, IDisposable
{
    private readonly TempDirectory _dir = new("daiko-store");

    protected override IHomeStore Store() => HomeStore.Sqlite(Path.Combine(_dir.Path, "home.db"));

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Bookkeeping_IsFlushedToTheDiskASecondAfterItsCommit_OnceForTheCommitsOfThatSecond_AndNotAtAllWithoutCommits()
    {
        var store = Store();
        await store.Audit.RecentAsync(1);
        await Task.Delay(GroupedWrites.FlushWithin * 1.5);
        Assert.Equal((0L, 0L), store.Writes.FlushStatistics);

        var committed = DateTimeOffset.UtcNow;
        await store.Audit.AppendAsync(new AuditEntry(committed, null, "x", null, null, "y"));
        for (var i = 0; i < 500 && store.Writes.FlushStatistics.Flushes == 0; i++) await Task.Delay(20);
        Assert.Equal((1L, 0L), store.Writes.FlushStatistics);
        // The flush is a fully synced commit of a row of its own, after the bookkeeping's commit.
        await using var connection = await Store().OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT flushed_at FROM store_flushes WHERE id = 1";
        var flushedAt = DateTimeOffset.Parse((string)(await command.ExecuteScalarAsync())!, System.Globalization.CultureInfo.InvariantCulture);
        // A second after the commit (the timer's own lateness on a busy machine allowed for).
        Assert.InRange(flushedAt - committed, GroupedWrites.FlushWithin - TimeSpan.FromMilliseconds(50), GroupedWrites.FlushWithin + TimeSpan.FromSeconds(5));

        // Many commits within the second share one flush.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, 6).Select(i => store.Audit.AppendAsync(new AuditEntry(committed, null, $"x{i}", null, null, "y"))));
        var spread = clock.Elapsed;
        for (var i = 0; i < 500 && store.Writes.FlushStatistics.Flushes < 2; i++) await Task.Delay(20);
        await Task.Delay(GroupedWrites.FlushWithin * 1.5);
        // (Appends that took longer than the second itself, on a machine too busy for it, may need a second flush.)
        Assert.InRange(store.Writes.FlushStatistics.Flushes, 2L, spread < GroupedWrites.FlushWithin / 2 ? 2L : 3L);
        Assert.Equal(0L, store.Writes.FlushStatistics.Failures);
    }
}

/// <summary>One PostgreSQL server for the class; each test gets a database of its own.</summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("daiko-pg");

    public PostgresServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await PostgresServer.StartAsync(_dir.Path);

    public Task DisposeAsync()
    {
        Server.Dispose();
        _dir.Dispose();
        return Task.CompletedTask;
    }

    public string NewDatabase()
    {
        var name = $"t{Guid.NewGuid():N}";
        using var connection = new NpgsqlConnection(Server.ConnectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"CREATE DATABASE {name}";
        command.ExecuteNonQuery();
        return new NpgsqlConnectionStringBuilder(Server.ConnectionString) { Database = name }.ToString();
    }
}

[Collection("home card")]
public sealed class PostgresHomeStoreTests(PostgresFixture postgres) : HomeStoreContract, IClassFixture<PostgresFixture>
{
    private readonly string _database = postgres.NewDatabase();

    protected override IHomeStore Store() => HomeStore.Postgres(_database);
}

/// <summary>
/// The same rules on an owner's schema of a hosted deployment: one database, a schema per test, the
/// store's connections confined to it by their search_path, on one shared data source.
/// </summary>
[Collection("home card")]
public sealed class PostgresOwnerSchemaHomeStoreTests(PostgresFixture postgres) : HomeStoreContract, IClassFixture<PostgresFixture>
{
    private readonly NpgsqlDataSource _source = NpgsqlDataSource.Create(postgres.Server.ConnectionString);
    private readonly string _schema = NewSchema(postgres.Server.ConnectionString);

    private static string NewSchema(string connectionString)
    {
        var name = $"owner_t{Guid.NewGuid():N}";
        using var connection = new NpgsqlConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"CREATE SCHEMA {name}";
        command.ExecuteNonQuery();
        return name;
    }

    protected override IHomeStore Store() => HomeStore.Postgres(_source, _schema);

    /// <summary>
    /// Two owners' schemas on one data source (one node's pool) whose default search path leads to a table of the same
    /// name: a device id and market of one owner counts apart from the same of another, and every write lands in its own
    /// owner's table, none in the default path's (the search path rides in each batch).
    /// </summary>
    [Fact]
    public async Task Tickets_OfTwoOwnersOnOneSource_CountApart_EachInItsOwnSchema()
    {
        var clock = new ManualClock(DateTimeOffset.UnixEpoch.AddYears(56));
        var otherSchema = NewSchema(postgres.Server.ConnectionString);
        await using var connection = new NpgsqlConnection(postgres.Server.ConnectionString);
        await connection.OpenAsync();
        // A table where the connections' default path would find one: a batch that ran without its owner's path would write here.
        var trap = $"trap_{Guid.NewGuid():N}";
        await using (var create = new NpgsqlCommand($"CREATE SCHEMA {trap}; CREATE TABLE {trap}.device_tickets (place TEXT PRIMARY KEY, device_id TEXT, market TEXT, expires_ms BIGINT)", connection)) await create.ExecuteNonQueryAsync();
        await using var trapped = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(postgres.Server.ConnectionString) { SearchPath = trap }.ConnectionString);
        var mine = new StoredTicketHoldings(HomeStore.Postgres(trapped, _schema), clock);
        var theirs = new StoredTicketHoldings(HomeStore.Postgres(trapped, otherSchema), clock);

        await using (var place = await mine.ReserveAsync("dev", "m.test:443", 1, CancellationToken.None)) await place.HandedAsync(clock.Now.AddMinutes(10), CancellationToken.None);
        await Assert.ThrowsAsync<PolicyRefusedException>(() => mine.ReserveAsync("dev", "m.test:443", 1, CancellationToken.None));
        await using (var place = await theirs.ReserveAsync("dev", "m.test:443", 1, CancellationToken.None)) await place.HandedAsync(clock.Now.AddMinutes(20), CancellationToken.None);

        foreach (var (schema, minutes) in new[] { (_schema, 10), (otherSchema, 20) })
        {
            await using var rows = new NpgsqlCommand($"SELECT expires_ms FROM {schema}.device_tickets", connection);
            Assert.Equal(clock.Now.AddMinutes(minutes).ToUnixTimeMilliseconds(), (long)(await rows.ExecuteScalarAsync())!);
        }
        await using var none = new NpgsqlCommand($"SELECT COUNT(*) FROM {trap}.device_tickets", connection);
        Assert.Equal(0L, (long)(await none.ExecuteScalarAsync())!);
    }

    /// <summary>
    /// A fresh owner's store on a pool of one connection (a node's pool with every other connection in
    /// use) still applies its migrations and serves: no request holds one connection while waiting for another.
    /// </summary>
    [Fact]
    public async Task AFreshStore_OnAPoolOfOneConnection_MigratesAndServes()
    {
        var pooled = new NpgsqlConnectionStringBuilder(postgres.Server.ConnectionString) { Pooling = true, MaxPoolSize = 1, Timeout = 3 };
        await using var one = NpgsqlDataSource.Create(pooled.ConnectionString);
        var store = HomeStore.Postgres(one, NewSchema(postgres.Server.ConnectionString));
        Assert.True(await store.Devices.AddAsync(new Device("aa01", "phone", [0x30, 0x59], DateTimeOffset.UtcNow, null)));
        await store.Audit.AppendAsync(new AuditEntry(DateTimeOffset.UtcNow, "aa01", "unlock", null, null, "ok"));
        Assert.Equal("phone", Assert.Single(await store.Devices.ListAsync()).Name);
        Assert.Single(await store.Audit.RecentAsync(10));
    }

    /// <summary>
    /// One owner of a node asking for every connection of the node's pool at once holds half of them and waits for the
    /// rest on its own share, while another owner on the same pool is served from the other half; the first owner's
    /// waiting requests are served as its own connections come back (closed either way), and one that waits past the
    /// pool's patience fails as a passing outage. Without the share the first owner took all four, and the other
    /// owner's request failed with the pool exhausted.
    /// </summary>
    [Fact]
    public async Task OneOwnerAskingForEveryConnectionOfThePool_HoldsHalf_AndAnotherOwnerIsServedMeanwhile()
    {
        // A patience of 6 s (the share waits three of the pool's 2 s timeouts): the checks below fit in it on a loaded machine.
        var pooled = new NpgsqlConnectionStringBuilder(postgres.Server.ConnectionString) { Pooling = true, MaxPoolSize = 4, Timeout = 2 };
        await using var node = NpgsqlDataSource.Create(pooled.ConnectionString);
        var greedy = HomeStore.Postgres(node, NewSchema(postgres.Server.ConnectionString));
        var other = HomeStore.Postgres(node, NewSchema(postgres.Server.ConnectionString));
        var asked = Enumerable.Range(0, 4).Select(_ => greedy.OpenAsync()).ToList();
        // Two are served as soon as their connections open; the other two can end only by a release or their patience.
        var pending = asked.ToList();
        for (var served = 0; served < 2; served++)
        {
            var done = await Task.WhenAny(pending).WaitAsync(TimeSpan.FromSeconds(30));
            pending.Remove(done);
        }
        var held = asked.Where(t => t.IsCompletedSuccessfully).Select(t => t.Result).ToList();
        var waiting = asked.Where(t => !t.IsCompleted).ToList();
        Assert.Equal(2, held.Count);
        Assert.Equal(2, waiting.Count);

        await using (var served = await other.OpenAsync())
        {
            await using var command = ((NpgsqlConnection)served).CreateCommand();
            command.CommandText = "SELECT 1";
            Assert.Equal(1, await command.ExecuteScalarAsync());
        }
        Assert.All(waiting, t => Assert.False(t.IsCompleted));

        // Given back by closing: one disposed synchronously, one asynchronously; each lets one waiting request in.
        held[0].Dispose();
        await held[1].DisposeAsync();
        var late = await Task.WhenAll(waiting).WaitAsync(TimeSpan.FromSeconds(30));
        var beyond = await Assert.ThrowsAsync<NpgsqlException>(() => greedy.OpenAsync());
        Assert.True(StoreOutage.Is(beyond), beyond.Message);
        Assert.Contains("share", beyond.Message, StringComparison.Ordinal);
        foreach (var c in late) await c.DisposeAsync();
        await using var again = await greedy.OpenAsync();
    }

    /// <summary>
    /// The purse's writer lock, as two nodes of a hosted deployment take it for one owner's purse: the
    /// second waits until the first lets go (before its transaction begins, so it then sees the first's
    /// commit instead of failing with a serialization failure), and another owner's purse never waits.
    /// </summary>
    [Fact]
    public async Task ThePurseLock_MakesAnotherNodeOfTheSameOwnerWait_AndNoOtherOwner()
    {
        var store = Store();
        await using var otherNode = NpgsqlDataSource.Create(postgres.Server.ConnectionString);
        var sameOwnerElsewhere = HomeStore.Postgres(otherNode, _schema);
        var anotherOwner = HomeStore.Postgres(otherNode, NewSchema(postgres.Server.ConnectionString));
        using var first = store.Open();
        var held = store.LockPurse(first);
        var waiting = Task.Run(() =>
        {
            using var c = sameOwnerElsewhere.Open();
            using var writer = sameOwnerElsewhere.LockPurse(c);
            return DateTimeOffset.UtcNow;
        });
        using (var c = anotherOwner.Open())
        using (anotherOwner.LockPurse(c))
        {
            // another owner's purse is not behind this one's lock
        }
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        Assert.False(waiting.IsCompleted);
        var released = DateTimeOffset.UtcNow;
        held.Dispose();
        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(30)) >= released);
    }

    /// <summary>A request that finds every connection of the pool in use past the pool's timeout waits again (logged) instead of failing, and is served once one comes back.</summary>
    [Fact]
    public async Task APoolInUsePastItsTimeout_TheRequestWaitsAgain_AndIsServedWhenAConnectionComesBack()
    {
        var pooled = new NpgsqlConnectionStringBuilder(postgres.Server.ConnectionString) { Pooling = true, MaxPoolSize = 1, Timeout = 1 };
        await using var one = NpgsqlDataSource.Create(pooled.ConnectionString);
        var store = HomeStore.Postgres(one, NewSchema(postgres.Server.ConnectionString));
        await store.MigrateAsync();
        var held = await one.OpenConnectionAsync();
        var waiting = store.Devices.ListAsync();
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        Assert.False(waiting.IsCompleted);
        await held.DisposeAsync();
        Assert.Empty(await waiting.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task APoolInUseThroughEveryWait_FailsWithADatabaseError_ThatPollersAndOwnerLoadsTryAgainAfter()
    {
        var pooled = new NpgsqlConnectionStringBuilder(postgres.Server.ConnectionString) { Pooling = true, MaxPoolSize = 1, Timeout = 1 };
        await using var one = NpgsqlDataSource.Create(pooled.ConnectionString);
        var store = HomeStore.Postgres(one, NewSchema(postgres.Server.ConnectionString));
        await store.MigrateAsync();
        await using var held = await one.OpenConnectionAsync();
        // Revocation, policy and card-state pollers and a node's owner loads retry on DbException only.
        var failure = await Assert.ThrowsAnyAsync<System.Data.Common.DbException>(() => store.Devices.ListAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("pool", failure.Message, StringComparison.OrdinalIgnoreCase);
    }
}
