using Daiko.Home.Pim;
using Xunit;

namespace Daiko.Home.Tests.Pim;

public sealed class PimStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("daiko-pim-").FullName;

    private PimStore NewStore() => new(Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(_dir, "home.db")));

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Sync_NewItem_IsAppliedAndSeenByAnotherTerminal()
    {
        var store = NewStore();
        var phone = await store.SyncAsync(0, [new PimChange("c1", PimKind.Contact, 0, false, """{"name":"Bob"}""")]);
        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(phone.Results).Outcome);

        var office = await store.SyncAsync(0, []);
        var item = Assert.Single(office.Changes);
        Assert.Equal("c1", item.Id);
        Assert.Equal(1, item.Version);
        Assert.Contains("Bob", item.Body, StringComparison.Ordinal);
        Assert.Equal(phone.Revision, office.Revision);
    }

    [Fact]
    public async Task Sync_RefusesTheCharacterU0000_InAnIdOrABody_AndStoresNothingOfIt()
    {
        var store = NewStore();
        var result = await store.SyncAsync(0, [new PimChange("c1", PimKind.Contact, 0, false, "Bob\0" + new string('x', 1000)), new PimChange("c\02", PimKind.Contact, 0, false, "Ann")]);

        Assert.All(result.Results, r => Assert.Equal(PimChangeOutcome.Rejected, r.Outcome));
        Assert.Contains("U+0000", result.Results[0].Reason, StringComparison.Ordinal);
        Assert.Empty((await store.SyncAsync(0, [])).Changes);
    }

    [Fact]
    public async Task AnItemWithU0000StoredBeforeItWasRefused_CanStillBeDeleted()
    {
        var home = Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(_dir, "home.db"));
        await new PimStore(home).SyncAsync(0, []);
        await using (var connection = await home.OpenAsync())
        {
            await Daiko.Home.Storage.StoreCommands.ExecuteAsync(connection, null,
                "INSERT INTO pim_items (id, kind, version, revision, deleted, body, modified_at) VALUES (@id, 0, 1, 1, 0, 'x', '2026-01-01T00:00:00+00:00')",
                CancellationToken.None, ("@id", "c\0old"));
        }

        var deleted = await new PimStore(home).SyncAsync(1, [new PimChange("c\0old", PimKind.Contact, 1, true, "")]);

        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(deleted.Results).Outcome);
        Assert.Empty(await new PimStore(home).ListAsync(PimKind.Contact));
    }

    [Fact]
    public async Task Sync_PagesThroughManyItems_EachOnceInRevisionOrder()
    {
        var store = NewStore();
        var body = "{\"name\":\"" + new string('x', 8000) + "\"}";
        for (var i = 0; i < 20; i++) await store.SyncAsync(0, [new PimChange($"n{i:00}", PimKind.Contact, 0, false, body)], pageBytes: 1);

        // A device that writes one more item and pages from the start, 32 KB at a time.
        var seen = new List<string>();
        var first = await store.SyncAsync(0, [new PimChange("mine", PimKind.Contact, 0, false, body)], pageBytes: 32 * 1024);
        // Its own write is in its results, not in the page that answers it (a later page, asked from an older revision, may carry it).
        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(first.Results).Outcome);
        Assert.DoesNotContain(first.Changes, c => c.Id == "mine");
        var (since, more, changes) = (first.Revision, first.More, first.Changes);
        for (var pages = 1; ; pages++)
        {
            Assert.True(changes.Count is > 0 and <= 4, $"page {pages}: {changes.Count} items");
            seen.AddRange(changes.Select(c => c.Id));
            Assert.Equal(changes[^1].Revision, since);
            if (!more) break;
            var next = await store.SyncAsync(since, [], pageBytes: 32 * 1024);
            (since, more, changes) = (next.Revision, next.More, next.Changes);
        }

        Assert.Equal([.. Enumerable.Range(0, 20).Select(i => $"n{i:00}"), "mine"], seen);
        Assert.Empty((await store.SyncAsync(since, [])).Changes);
    }

    [Fact]
    public async Task Sync_OfManyTinyItems_EndsAPageAtItsRowLimit_AndTheNextPageGoesOn()
    {
        var store = NewStore();
        var count = Daiko.Home.Storage.SqlPimStore.PageRows + 52;
        for (var from = 0; from < count; from += 700)
        {
            await store.SyncAsync(0, Enumerable.Range(from, Math.Min(700, count - from)).Select(i => new PimChange($"t{i:0000}", PimKind.Todo, 0, false, "{}")).ToList(), pageBytes: 1);
        }

        var first = await store.SyncAsync(0, []);
        Assert.True(first.More);
        Assert.Equal(Daiko.Home.Storage.SqlPimStore.PageRows, first.Changes.Count);
        var second = await store.SyncAsync(first.Revision, []);
        Assert.False(second.More);
        Assert.Equal(Enumerable.Range(0, count).Select(i => $"t{i:0000}"), first.Changes.Concat(second.Changes).Select(c => c.Id));
    }

    [Fact]
    public async Task Sync_EditBasedOnStaleVersion_IsAConflictAndKeepsTheNewerEdit()
    {
        var store = NewStore();
        await store.SyncAsync(0, [new PimChange("t1", PimKind.Todo, 0, false, "buy milk")]);
        await store.SyncAsync(0, [new PimChange("t1", PimKind.Todo, 1, false, "buy oat milk")]);

        var stale = await store.SyncAsync(0, [new PimChange("t1", PimKind.Todo, 1, false, "buy soy milk")]);

        var result = Assert.Single(stale.Results);
        Assert.Equal(PimChangeOutcome.Conflict, result.Outcome);
        Assert.Equal("buy oat milk", result.Current!.Body);
        Assert.Equal("buy oat milk", Assert.Single(await store.ListAsync(PimKind.Todo)).Body);
    }

    [Fact]
    public async Task Sync_ReturnsOnlyChangesNewerThanTheTerminalsRevision()
    {
        var store = NewStore();
        var first = await store.SyncAsync(0, [new PimChange("e1", PimKind.Event, 0, false, "dentist")]);
        await store.SyncAsync(first.Revision, [new PimChange("e2", PimKind.Event, 0, false, "train")]);

        var later = await store.SyncAsync(first.Revision, []);

        Assert.Equal("e2", Assert.Single(later.Changes).Id);
    }

    [Fact]
    public async Task Sync_Delete_LeavesATombstoneOtherTerminalsLearnOf()
    {
        var store = NewStore();
        var created = await store.SyncAsync(0, [new PimChange("c9", PimKind.Contact, 0, false, "Carol")]);
        await store.SyncAsync(created.Revision, [new PimChange("c9", PimKind.Contact, 1, true, "")]);

        var other = await store.SyncAsync(created.Revision, []);

        Assert.True(Assert.Single(other.Changes).Deleted);
        Assert.Empty(await store.ListAsync(PimKind.Contact));
    }

    [Theory]
    [InlineData("", "1 to 128")]
    [InlineData("x", "negative")]
    public async Task Sync_InvalidChange_IsRejectedWithAReason(string id, string reason)
    {
        var store = NewStore();
        var result = await store.SyncAsync(0, [new PimChange(id, PimKind.Todo, id.Length == 0 ? 0 : -1, false, "b")]);
        var r = Assert.Single(result.Results);
        Assert.Equal(PimChangeOutcome.Rejected, r.Outcome);
        Assert.Contains(reason, r.Reason, StringComparison.Ordinal);
        Assert.Empty(await store.ListAsync(PimKind.Todo));
    }

    [Fact]
    public async Task Sync_OversizedBody_IsRejected()
    {
        var store = NewStore();
        var result = await store.SyncAsync(0, [new PimChange("big", PimKind.Todo, 0, false, new string('a', PimStore.MaxBodyBytes + 1))]);
        Assert.Equal(PimChangeOutcome.Rejected, Assert.Single(result.Results).Outcome);
    }

    [Fact]
    public async Task Store_SurvivesReopening()
    {
        await NewStore().SyncAsync(0, [new PimChange("c1", PimKind.Contact, 0, false, "Dan")]);
        Assert.Equal("Dan", Assert.Single(await NewStore().ListAsync(PimKind.Contact)).Body);
    }
}
