using Daiko.Home.Storage;
using Daiko.TestSupport;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Daiko.Home.Tests.Storage;

/// <summary>In a collection that runs alone: other tests empty every SQLite pool, which would hand this one a new handle mid-test.</summary>
[Collection("home card")]
public sealed class HomeDatabaseTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-pool");

    private string ConnectionString => HomeDatabase.ConnectionString(Path.Combine(_dir.Path, "pooled.db"));

    public void Dispose()
    {
        SqliteConnection.ClearPool(new SqliteConnection(ConnectionString));
        _dir.Dispose();
    }

    [Fact]
    public async Task APooledConnection_IsSetUpOnce_AndKeepsItsSettings_WithoutRunningThemAgain()
    {
        var connectionString = ConnectionString;
        var handle = await PooledPastTheStoreAsync(connectionString);
        // The store's first open of that pooled handle sets it up.
        await using (var first = await HomeDatabase.OpenAsync(connectionString, CancellationToken.None))
        {
            Assert.Same(handle, first.Handle);
            await AssertSettingsAsync(first);
            // Changed behind the store's back: a handle set up once is not set up again.
            await Pragma(first, "PRAGMA busy_timeout = 1234");
        }
        await using (var again = await HomeDatabase.OpenAsync(connectionString, CancellationToken.None))
        {
            Assert.Same(handle, again.Handle);
            Assert.Equal(1234L, await Pragma(again, "PRAGMA busy_timeout"));
        }
        using (var synchronous = HomeDatabase.Open(connectionString))
        {
            Assert.Same(handle, synchronous.Handle);
            Assert.Equal(1234L, await Pragma(synchronous, "PRAGMA busy_timeout"));
            Assert.Equal(2L, await Pragma(synchronous, "PRAGMA synchronous"));
        }
    }

    [Fact]
    public async Task TheSynchronousOpen_SetsUpAHandleItMeetsFirst()
    {
        var connectionString = ConnectionString;
        var handle = await PooledPastTheStoreAsync(connectionString);
        using (var synchronous = HomeDatabase.Open(connectionString))
        {
            Assert.Same(handle, synchronous.Handle);
            await AssertSettingsAsync(synchronous);
        }
        // A handle of its own (the pool emptied) is set up at its first open.
        SqliteConnection.ClearPool(new SqliteConnection(connectionString));
        await using var fresh = await HomeDatabase.OpenAsync(connectionString, CancellationToken.None);
        Assert.NotSame(handle, fresh.Handle);
        await AssertSettingsAsync(fresh);
    }

    /// <summary>A handle the store has not set up (opened past it), with SQLite's settings turned the other way, back in the pool.</summary>
    private static async Task<SQLitePCL.sqlite3> PooledPastTheStoreAsync(string connectionString)
    {
        await using var raw = new SqliteConnection(connectionString);
        await raw.OpenAsync();
        await Pragma(raw, "PRAGMA synchronous = OFF");
        await Pragma(raw, "PRAGMA busy_timeout = 0");
        return raw.Handle!;
    }

    private static async Task AssertSettingsAsync(SqliteConnection connection)
    {
        Assert.Equal(10000L, await Pragma(connection, "PRAGMA busy_timeout"));
        Assert.Equal(2L, await Pragma(connection, "PRAGMA synchronous")); // FULL: a commit is fsynced before it returns
        Assert.Equal("wal", await Pragma(connection, "PRAGMA journal_mode"));
    }

    [Fact]
    public async Task BookkeepingHandles_SkipTheDisksFlush_OnlyOnAFileInWalMode()
    {
        var path = Path.Combine(_dir.Path, "bookkeeping.db");
        await using (var main = await HomeDatabase.OpenAsync(HomeDatabase.ConnectionString(path), CancellationToken.None))
            Assert.Equal(2L, await Pragma(main, "PRAGMA synchronous"));
        await using (var bookkeeping = await HomeDatabase.OpenBookkeepingAsync(HomeDatabase.BookkeepingConnectionString(path), CancellationToken.None))
        {
            Assert.Equal("wal", await Pragma(bookkeeping, "PRAGMA journal_mode"));
            Assert.Equal(1L, await Pragma(bookkeeping, "PRAGMA synchronous")); // NORMAL: committed to the WAL, synced by the next full commit
        }
        // A database that cannot take WAL (in memory here; a file system without shared memory likewise):
        // NORMAL there could damage the file on a power cut, so the handle keeps FULL.
        await using var memory = await HomeDatabase.OpenBookkeepingAsync(HomeDatabase.BookkeepingConnectionString(":memory:"), CancellationToken.None);
        Assert.NotEqual("wal", await Pragma(memory, "PRAGMA journal_mode"));
        Assert.Equal(2L, await Pragma(memory, "PRAGMA synchronous"));
    }

    private static async Task<object?> Pragma(SqliteConnection connection, string sql)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return await command.ExecuteScalarAsync();
    }
}
