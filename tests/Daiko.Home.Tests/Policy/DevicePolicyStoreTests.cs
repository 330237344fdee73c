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
            Payees = ["corner-shop"],
        };

        await new SqlDevicePolicyStore(Store()).SaveAsync("phone", policy);
        await new SqlDevicePolicyStore(Store()).SaveAsync("tablet", DevicePolicy.Default with { Modes = DevicePolicy.ParseModes("none"), Appliances = [], Payees = [] });
        var found = await new SqlDevicePolicyStore(Store()).FindAsync("phone");

        Assert.NotNull(found);
        Assert.Equal(policy.MarketsText, found.MarketsText);
        Assert.Equal("resume,relay", found.ModesText);
        Assert.Equal(5000, found.SpendLimitPerDay);
        Assert.Equal(2, found.MaxTickets);
        Assert.Equal(TimeSpan.FromHours(1), found.TicketLifetime);
        Assert.Equal(["heater", "door"], found.Appliances);
        Assert.Equal(["corner-shop"], found.Payees);
        Assert.True(found.AllowsPayee("corner-shop") && !found.AllowsPayee("other-shop"));
        var tablet = await new SqlDevicePolicyStore(Store()).FindAsync("tablet");
        Assert.Empty(tablet!.Modes);
        Assert.False(tablet.AllowsAppliance("heater"));
        Assert.False(tablet.AllowsPayee("corner-shop"));

        await new SqlDevicePolicyStore(Store()).SaveAsync("phone", found with { SpendLimitPerDay = null, TicketLifetime = null, Appliances = null, Payees = null });
        var updated = await new SqlDevicePolicyStore(Store()).FindAsync("phone");
        Assert.Null(updated!.SpendLimitPerDay);
        Assert.Null(updated.TicketLifetime);
        Assert.True(updated.AllowsAppliance("anything"));
        Assert.True(updated.AllowsPayee("anything") && updated.Payees is null);
    }

    [Fact]
    public async Task APolicyTableOfTheVersionBefore_GainsPayees_KeepingItsPolicies()
    {
        var store = Store();
        // The tables as the version before made them on first use (no payees column, no migration recorded).
        await using (var connection = store.Open())
        {
            foreach (var sql in new[]
            {
                """
                CREATE TABLE device_policies (name TEXT PRIMARY KEY, markets TEXT NOT NULL, modes TEXT NOT NULL, spend_limit BIGINT,
                    max_tickets INTEGER NOT NULL, ticket_lifetime_seconds BIGINT, appliances TEXT, updated_at TEXT NOT NULL)
                """,
                "INSERT INTO device_policies VALUES ('phone', '*.shop.example', 'resume', 5000, 2, NULL, 'heater', '2026-12-01T00:00:00Z')",
            })
            {
                await using var command = connection.CreateCommand();
                command.CommandText = sql;
                await command.ExecuteNonQueryAsync();
            }
        }

        var old = await new SqlDevicePolicyStore(store).FindAsync("phone");
        Assert.NotNull(old);
        Assert.Equal(("*.shop.example", "resume", 5000L, 2, "heater"), (old.MarketsText, old.ModesText, old.SpendLimitPerDay!.Value, old.MaxTickets, old.AppliancesText));
        Assert.Null(old.Payees);

        await new SqlDevicePolicyStore(store).SaveAsync("phone", old with { Payees = ["corner-shop"] });
        Assert.Equal(["corner-shop"], (await new SqlDevicePolicyStore(Store()).FindAsync("phone"))!.Payees);
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

    private DevicePolicies PoliciesOfANode() =>
        new(new SqlDevicePolicyStore(Store()), (id, _) => Task.FromResult<string?>(id == "dev-1" ? "phone" : null), TimeProvider.System);

    /// <summary>
    /// The terms a device's stock was handed out under outlive the process that handed it out: a
    /// restarted server, or another node the device reconnects to, still sees a later policy change as
    /// one, tells the device once it is heard, and not again.
    /// </summary>
    [Fact]
    public async Task AStockHandedOutByAnotherNode_IsJudgedByTheTermsItWasHandedOutUnder()
    {
        var store = new SqlDevicePolicyStore(Store());
        var handing = PoliciesOfANode();
        var (before, _) = await handing.ForDeviceAsync("dev-1");
        await handing.StockedAsync("dev-1", before.TicketTerms);

        // The owner narrows the device's markets; the device's channel is now on another node (or a restarted server).
        var narrowed = before with { Markets = DevicePolicy.ParseMarkets("shop.example") };
        await store.SaveAsync("phone", narrowed);
        var other = PoliciesOfANode();

        var stale = await other.StaleStockAsync("dev-1");
        Assert.NotNull(stale);
        Assert.Equal(before.TicketTerms, stale.HandedUnder);
        Assert.Equal(narrowed.TicketTerms, stale.Current);
        // Until an agent heard the notice, every look finds the stock stale.
        Assert.NotNull(await other.StaleStockAsync("dev-1"));

        await other.StockDroppedAsync(stale);
        Assert.Null(await other.StaleStockAsync("dev-1"));
        Assert.Null(await PoliciesOfANode().StaleStockAsync("dev-1"));
    }

    [Fact]
    public async Task AHandOutUnderOldTermsAfterAChange_IsStaleAgain_AndADeviceWithNoStockNotedIsNot()
    {
        var store = new SqlDevicePolicyStore(Store());
        var policies = PoliciesOfANode();
        var (old, _) = await policies.ForDeviceAsync("dev-1");
        Assert.Null(await policies.StaleStockAsync("dev-1"));
        var changed = old with { MaxTickets = old.MaxTickets + 1 };
        await store.SaveAsync("phone", changed);
        // A change after the first look counts, as it always did.
        Assert.NotNull(await policies.StaleStockAsync("dev-1"));
        await policies.StockDroppedAsync((await policies.StaleStockAsync("dev-1"))!);

        // A hand-out that read the old terms from its cache just before the change.
        await policies.StockedAsync("dev-1", old.TicketTerms);
        var stale = await policies.StaleStockAsync("dev-1");
        Assert.Equal(old.TicketTerms, stale?.HandedUnder);

        // A device never stocked anywhere, first looked at after a change: its terms are taken as they are now.
        Assert.Null(await PoliciesOfANode().StaleStockAsync("dev-2"));
    }
}

public sealed class SqliteDevicePolicyStoreTests() : DevicePolicyStoreContract(StoreKind.Sqlite)
{
}

[Collection("home card")]
public sealed class PostgresDevicePolicyStoreTests() : DevicePolicyStoreContract(StoreKind.Postgres)
{
}
