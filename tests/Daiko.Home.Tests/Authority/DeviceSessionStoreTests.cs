using Daiko.Home.Storage;
using Daiko.Home.Tests.Storage;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Authority;

/// <summary>The devices' unlock sessions: one contract, run on SQLite and on a real PostgreSQL server.</summary>
public abstract class DeviceSessionStoreContract(StoreKind kind) : StoreContract(kind, "daiko-ds")
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 2, 8, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task ASession_IsFoundAgainByANewRepository_TouchedOnlyForward_AndEnded()
    {
        await new SqlDeviceSessionStore(Store()).SaveAsync(new DeviceSession("dev-a", "s1", T0, T0));
        var store = new SqlDeviceSessionStore(Store());

        Assert.Equal(new DeviceSession("dev-a", "s1", T0, T0), await store.FindAsync("dev-a"));
        Assert.Null(await store.FindAsync("dev-b"));
        Assert.True(await store.TouchAsync("dev-a", "s1", T0.AddMinutes(5)));
        Assert.True(await store.TouchAsync("dev-a", "s1", T0.AddMinutes(1)));
        Assert.Equal(T0.AddMinutes(5), (await store.FindAsync("dev-a"))!.LastUse);
        // A touch for an ended or replaced session does not bring it back.
        Assert.False(await store.TouchAsync("dev-a", "s-old", T0.AddMinutes(6)));
        Assert.False(await store.TouchAsync("dev-b", "s1", T0.AddMinutes(6)));

        Assert.True(await store.EndAsync("dev-a"));
        Assert.False(await store.EndAsync("dev-a"));
        Assert.Null(await store.FindAsync("dev-a"));
        Assert.False(await store.TouchAsync("dev-a", "s1", T0.AddMinutes(7)));
    }

    [Fact]
    public async Task ASession_ReplacesOnlyTheOneItWasReadAs_OrNoneWhereThereWasNone()
    {
        var store = new SqlDeviceSessionStore(Store());
        Assert.True(await store.ReplaceAsync(new DeviceSession("dev-a", "s1", T0, T0), null));
        // Opened meanwhile by another: neither a second "none" nor a stale id replaces it.
        Assert.False(await store.ReplaceAsync(new DeviceSession("dev-a", "s2", T0, T0), null));
        Assert.False(await store.ReplaceAsync(new DeviceSession("dev-a", "s2", T0, T0), "s0"));
        Assert.Equal("s1", (await store.FindAsync("dev-a"))!.SessionId);

        Assert.True(await store.ReplaceAsync(new DeviceSession("dev-a", "s2", T0.AddMinutes(1), T0.AddMinutes(1)), "s1"));
        Assert.Equal(new DeviceSession("dev-a", "s2", T0.AddMinutes(1), T0.AddMinutes(1)), await store.FindAsync("dev-a"));
        // Ended meanwhile: the id read is gone, so it replaces nothing.
        Assert.True(await store.EndAsync("dev-a"));
        Assert.False(await store.ReplaceAsync(new DeviceSession("dev-a", "s3", T0, T0), "s2"));
        Assert.Null(await store.FindAsync("dev-a"));
    }

    [Fact]
    public async Task EachDevice_HasItsOwnSession_AndEndAllEndsEveryOne()
    {
        var store = new SqlDeviceSessionStore(Store());
        await store.SaveAsync(new DeviceSession("dev-a", "s1", T0, T0));
        await store.SaveAsync(new DeviceSession("dev-b", "s2", T0.AddMinutes(1), T0.AddMinutes(2)));
        await store.SaveAsync(new DeviceSession("dev-a", "s3", T0.AddMinutes(3), T0.AddMinutes(3)));

        var all = await store.ListAsync();
        Assert.Equal(["dev-a", "dev-b"], all.Select(s => s.DeviceId));
        Assert.Equal("s3", all[0].SessionId);
        Assert.Equal(T0.AddMinutes(2), all[1].LastUse);

        Assert.Equal(2, await store.EndAllAsync());
        Assert.Empty(await store.ListAsync());
    }
}

public sealed class SqliteDeviceSessionStoreTests() : DeviceSessionStoreContract(StoreKind.Sqlite)
{
}

[Collection("home card")]
public sealed class PostgresDeviceSessionStoreTests() : DeviceSessionStoreContract(StoreKind.Postgres)
{
}
