using Daiko.Home.Pim;
using Xunit;

namespace Daiko.Home.Tests.Pim;

public sealed class PimStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("daiko-pim-").FullName;

    private PimStore NewStore() => new(Path.Combine(_dir, "home.db"));

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Sync_NewItem_IsAppliedAndSeenByAnotherTerminal()
    {
        var store = NewStore();
        var phone = store.Sync(0, [new PimChange("c1", PimKind.Contact, 0, false, """{"name":"Bob"}""")]);
        Assert.Equal(PimChangeOutcome.Applied, Assert.Single(phone.Results).Outcome);

        var office = store.Sync(0, []);
        var item = Assert.Single(office.Changes);
        Assert.Equal("c1", item.Id);
        Assert.Equal(1, item.Version);
        Assert.Contains("Bob", item.Body, StringComparison.Ordinal);
        Assert.Equal(phone.Revision, office.Revision);
    }

    [Fact]
    public void Sync_EditBasedOnStaleVersion_IsAConflictAndKeepsTheNewerEdit()
    {
        var store = NewStore();
        store.Sync(0, [new PimChange("t1", PimKind.Todo, 0, false, "buy milk")]);
        store.Sync(0, [new PimChange("t1", PimKind.Todo, 1, false, "buy oat milk")]);

        var stale = store.Sync(0, [new PimChange("t1", PimKind.Todo, 1, false, "buy soy milk")]);

        var result = Assert.Single(stale.Results);
        Assert.Equal(PimChangeOutcome.Conflict, result.Outcome);
        Assert.Equal("buy oat milk", result.Current!.Body);
        Assert.Equal("buy oat milk", Assert.Single(store.List(PimKind.Todo)).Body);
    }

    [Fact]
    public void Sync_ReturnsOnlyChangesNewerThanTheTerminalsRevision()
    {
        var store = NewStore();
        var first = store.Sync(0, [new PimChange("e1", PimKind.Event, 0, false, "dentist")]);
        store.Sync(first.Revision, [new PimChange("e2", PimKind.Event, 0, false, "train")]);

        var later = store.Sync(first.Revision, []);

        Assert.Equal("e2", Assert.Single(later.Changes).Id);
    }

    [Fact]
    public void Sync_Delete_LeavesATombstoneOtherTerminalsLearnOf()
    {
        var store = NewStore();
        var created = store.Sync(0, [new PimChange("c9", PimKind.Contact, 0, false, "Carol")]);
        store.Sync(created.Revision, [new PimChange("c9", PimKind.Contact, 1, true, "")]);

        var other = store.Sync(created.Revision, []);

        Assert.True(Assert.Single(other.Changes).Deleted);
        Assert.Empty(store.List(PimKind.Contact));
    }

    [Theory]
    [InlineData("", "1 to 128")]
    [InlineData("x", "negative")]
    public void Sync_InvalidChange_IsRejectedWithAReason(string id, string reason)
    {
        var store = NewStore();
        var result = store.Sync(0, [new PimChange(id, PimKind.Todo, id.Length == 0 ? 0 : -1, false, "b")]);
        var r = Assert.Single(result.Results);
        Assert.Equal(PimChangeOutcome.Rejected, r.Outcome);
        Assert.Contains(reason, r.Reason, StringComparison.Ordinal);
        Assert.Empty(store.List(PimKind.Todo));
    }

    [Fact]
    public void Sync_OversizedBody_IsRejected()
    {
        var store = NewStore();
        var result = store.Sync(0, [new PimChange("big", PimKind.Todo, 0, false, new string('a', PimStore.MaxBodyBytes + 1))]);
        Assert.Equal(PimChangeOutcome.Rejected, Assert.Single(result.Results).Outcome);
    }

    [Fact]
    public void Store_SurvivesReopening()
    {
        NewStore().Sync(0, [new PimChange("c1", PimKind.Contact, 0, false, "Dan")]);
        Assert.Equal("Dan", Assert.Single(NewStore().List(PimKind.Contact)).Body);
    }
}
