using System.Diagnostics;
using Daiko.Cards;
using Daiko.Cards.Site;
using Daiko.Home.Storage;
using Daiko.Host;
using Daiko.TestSupport;
using Npgsql;

namespace Daiko.EndToEnd.Tests.Hosted;

/// <summary>
/// What the site's database holds a hosted node's sessions to (a real PostgreSQL server): every connection the node
/// opens, its own and its owners' stores', asks the server to end it within about a minute of the node going quiet, so
/// that a node that vanishes mid-check does not keep an owner's card row locked for hours; and an owner's schema is
/// made for that owner alone.
/// </summary>
public sealed class SiteDatabaseSessionTests : IDisposable
{
    private readonly TestDatabase _database = new(StoreKind.Postgres, "daiko-site-sessions");

    public void Dispose() => _database.Dispose();

    private static OwnerCardRow NewRow(string owner) => new(owner, [1], [2], [3], [4], [5], 0, 0, false, HomeCardState.Locked, 0, null);

    private static async Task<string> ShowAsync(NpgsqlConnection connection, string setting)
    {
        await using var command = new NpgsqlCommand("SHOW " + setting, connection);
        return (string)(await command.ExecuteScalarAsync())!;
    }

    [Fact]
    public async Task EveryConnectionOfAHostedNode_AsksTheServerToEndItWithinAMinuteOfGoingQuiet_AfterEveryPoolReset()
    {
        await using (var setUp = NpgsqlDataSource.Create(_database.PostgresConnectionString))
        {
            var made = new SiteDatabase(setUp);
            await made.MigrateAsync();
            Assert.True(await made.AddOwnerAsync(NewRow("olga")));
        }
        // One pooled connection, so that each open below takes the one the open before it gave back.
        await using var source = NpgsqlDataSource.Create(PostgresSessionLimits.Hosted.WithStartupOptions(
            _database.PostgresConnectionString.Replace("Pooling=false;", "Maximum Pool Size=1;", StringComparison.Ordinal)));
        var site = new SiteDatabase(source);
        var store = site.StoreOf("olga");

        var opens = new (string Where, Func<Task<NpgsqlConnection>> Open)[]
        {
            ("the site's async open", () => site.OpenConnectionAsync()),
            ("the site's open (the card's paths)", () => Task.FromResult(site.OpenConnection())),
            ("the owner's store", () => Task.FromResult((NpgsqlConnection)store.Open())),
            ("the owner's store, async", async () => (NpgsqlConnection)await store.OpenAsync()),
        };
        foreach (var (where, open) in opens)
        {
            // A data-source command in between resets the pooled session (Npgsql's DISCARD ALL): the limits, the session's own defaults, stay.
            await using (var reset = source.CreateCommand("SELECT 1")) await reset.ExecuteScalarAsync();
            await using var connection = await open();
            var shown = new List<string> { where };
            foreach (var setting in new[] { "idle_in_transaction_session_timeout", "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout" })
                shown.Add($"{setting}={await ShowAsync(connection, setting)}");
            Assert.Equal([where, "idle_in_transaction_session_timeout=1min", "tcp_keepalives_idle=30", "tcp_keepalives_interval=10", "tcp_keepalives_count=3", "tcp_user_timeout=60000"], shown);
        }
        // The owner's store keeps its own search path beside them.
        await using var owned = (NpgsqlConnection)store.Open();
        Assert.Equal("owner_olga", await ShowAsync(owned, "search_path"));
    }

    [Fact]
    public async Task ACardRowLockedByANodeThatWentQuietInItsTransaction_IsFreedByTheServerAfterTheIdleTimeout_AndTheQuietNodesWriteIsNotMade()
    {
        var limits = PostgresSessionLimits.Hosted with { IdleInTransaction = TimeSpan.FromSeconds(1) };
        await using var source = NpgsqlDataSource.Create(limits.WithStartupOptions(_database.PostgresConnectionString));
        var site = new SiteDatabase(source);
        await site.MigrateAsync();
        Assert.True(await site.AddOwnerAsync(NewRow("olga")));

        // The node takes the owner's row lock and then hangs (an HSM that stops answering, a machine that lost power).
        var locked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var quiet = Task.Run(() => site.Update("olga", row =>
        {
            locked.SetResult();
            Thread.Sleep(TimeSpan.FromSeconds(10));
            return (row with { Pin1Failures = 1 }, 0);
        }));
        await locked.Task;

        // Another node's check of the same owner gets the row within seconds, not when the quiet node comes back.
        await using var other = new NpgsqlConnection(_database.PostgresConnectionString);
        await other.OpenAsync();
        // Less than the quiet node's 10 s, and far more than the server's 1 s idle timeout (a loaded machine ends it late).
        await using (var wait = new NpgsqlCommand("SET lock_timeout = '7s'", other)) await wait.ExecuteNonQueryAsync();
        var clock = Stopwatch.StartNew();
        await using (var transaction = await other.BeginTransactionAsync())
        {
            await using var row = new NpgsqlCommand("SELECT pin1_failures FROM host_owners WHERE name = 'olga' FOR UPDATE", other, transaction);
            Assert.Equal(0, (int)(await row.ExecuteScalarAsync())!);
            await transaction.CommitAsync();
        }
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(7), $"the row was free after {clock.Elapsed}");

        // The quiet node's session was ended, and its transaction with it: what it decided after the timeout is not written.
        await Assert.ThrowsAnyAsync<NpgsqlException>(() => quiet);
        Assert.Equal(0, site.Read("olga")!.Pin1Failures);
    }

    [Fact]
    public async Task AddingAnOwnerWhoseSchemaIsLeftInTheDatabase_IsRefused_NamingTheSchemaAndHowToDropIt()
    {
        await using var source = NpgsqlDataSource.Create(_database.PostgresConnectionString);
        var site = new SiteDatabase(source);
        await site.MigrateAsync();
        // An owner of that name whose rows were removed by hand: its schema, devices and all, is still there.
        await using (var left = source.CreateCommand("CREATE SCHEMA owner_olga; CREATE TABLE owner_olga.devices (id TEXT)")) await left.ExecuteNonQueryAsync();

        Assert.True(await site.SchemaExistsAsync("olga"));
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => site.AddOwnerAsync(NewRow("olga")));

        Assert.Contains("the database holds the schema owner_olga already", refused.Message, StringComparison.Ordinal);
        Assert.Contains("DROP SCHEMA owner_olga CASCADE", refused.Message, StringComparison.Ordinal);
        Assert.Null(site.Read("olga"));
        Assert.False(await site.SchemaExistsAsync("pavel"));
    }
}
