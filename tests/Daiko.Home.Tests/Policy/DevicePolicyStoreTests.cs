using Daiko.Home.Policy;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Storage;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Policy;

/// <summary>Device policies and last use in the home store: one contract, run on SQLite and on a real PostgreSQL server.</summary>
public abstract class DevicePolicyStoreContract(StoreKind kind) : StoreContract(kind, "daiko-policy")
{
    [Fact]
    public async Task APolicy_IsKeptByDeviceName_UpdatedInPlace_AndSurvivesReopening()
    {
        Assert.Null(await new SqlDevicePolicyStore(Store()).FindAsync("phone"));
        var policy = DevicePolicy.Default with
        {
            Markets = DevicePolicy.ParseMarkets("*.shop.example,bank.example:8443,10.0.0.0/8,[::1]:443"),
            Modes = DevicePolicy.ParseModes("resume,relay"),
            SpendLimitPerDay = 5000,
            MaxTickets = 2,
            TicketLifetime = TimeSpan.FromHours(1),
            Appliances = ["heater", "door"],
        };

        await new SqlDevicePolicyStore(Store()).SaveAsync("phone", policy);
        await new SqlDevicePolicyStore(Store()).SaveAsync("tablet", DevicePolicy.Default with { Modes = DevicePolicy.ParseModes("none"), Appliances = [] });
        var found = await new SqlDevicePolicyStore(Store()).FindAsync("phone");

        Assert.NotNull(found);
        Assert.Equal(policy.MarketsText, found.MarketsText);
        Assert.Equal("resume,relay", found.ModesText);
        Assert.Equal(5000, found.SpendLimitPerDay);
        Assert.Equal(2, found.MaxTickets);
        Assert.Equal(TimeSpan.FromHours(1), found.TicketLifetime);
        Assert.Equal(["heater", "door"], found.Appliances);
        var tablet = await new SqlDevicePolicyStore(Store()).FindAsync("tablet");
        Assert.Empty(tablet!.Modes);
        Assert.False(tablet.AllowsAppliance("heater"));

        await new SqlDevicePolicyStore(Store()).SaveAsync("phone", found with { SpendLimitPerDay = null, TicketLifetime = null, Appliances = null });
        var updated = await new SqlDevicePolicyStore(Store()).FindAsync("phone");
        Assert.Null(updated!.SpendLimitPerDay);
        Assert.Null(updated.TicketLifetime);
        Assert.True(updated.AllowsAppliance("anything"));
    }

    [Fact]
    public async Task LastUse_IsRecordedPerDevice()
    {
        var store = new SqlDevicePolicyStore(Store());
        Assert.Null(await store.LastUseAsync("phone"));
        var at = new DateTimeOffset(2026, 12, 2, 7, 30, 0, TimeSpan.Zero);

        await store.NoteUseAsync("phone", at);
        await store.NoteUseAsync("phone", at.AddMinutes(5));

        Assert.Equal(at.AddMinutes(5), await new SqlDevicePolicyStore(Store()).LastUseAsync("phone"));
        Assert.Null(await store.LastUseAsync("tablet"));
    }
}

public sealed class SqliteDevicePolicyStoreTests() : DevicePolicyStoreContract(StoreKind.Sqlite)
{
}

[Collection("home card")]
public sealed class PostgresDevicePolicyStoreTests() : DevicePolicyStoreContract(StoreKind.Postgres)
{
}
