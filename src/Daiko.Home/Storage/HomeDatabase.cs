using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;

namespace Daiko.Home.Storage;

/// <summary>
/// The home store's SQLite file (home.db): one place for how connections are opened — WAL, full
/// fsync on commit, and a busy timeout so that the home server and CLI commands can share the file.
/// Connections are pooled: opening one reads and parses the whole schema again, which cost the
/// server more CPU per request than the queries it ran. Pooled connections keep the file open after
/// the store is let go; whoever must close it (to copy or remove home.db) calls SqliteConnection.ClearAllPools.
/// </summary>
public static class HomeDatabase
{
    private const string Pragmas = "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL; PRAGMA journal_mode = WAL;";

    /// <summary>
    /// The handles of the grouped bookkeeping writes (<see cref="GroupedWrites"/>): in WAL mode a commit
    /// with <c>synchronous = NORMAL</c> is in the WAL file before it returns (a crash of the process loses
    /// none of it) and reaches the disk at the next fully synced commit or checkpoint.
    /// </summary>
    private const string BookkeepingPragmas = "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA journal_mode = WAL;";

    public static string ConnectionString(string databasePath) =>
        new SqliteConnectionStringBuilder { DataSource = databasePath, Pooling = true }.ToString();

    /// <summary>
    /// The bookkeeping handles' pool: a connection string of its own (the pool is keyed by it, and
    /// "Cache=Default" is what SQLite does anyway), so that no handle set up for bookkeeping is ever
    /// handed to the purse or any other writer that must wait for the disk.
    /// </summary>
    public static string BookkeepingConnectionString(string databasePath) =>
        new SqliteConnectionStringBuilder { DataSource = databasePath, Pooling = true, Cache = SqliteCacheMode.Default }.ToString();

    /// <summary>
    /// SQLite handles that have their settings. The settings belong to the handle, which the pool keeps
    /// open from one use to the next: each handle is set up once, the first time it is handed out, and a
    /// pooled open then runs no statement at all (it ran two or three: about 15 µs an open, and a request opens one or two).
    /// </summary>
    private static readonly ConditionalWeakTable<SQLitePCL.sqlite3, object> SetUp = new();

    private static readonly object Done = new();

    public static SqliteConnection Open(string connectionString)
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            connection.Open();
            SetUpOnce(connection, Pragmas);
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>Opens the file in WAL mode (a persistent setting of the file, asked for once a handle).</summary>
    public static Task<SqliteConnection> OpenAsync(string connectionString, CancellationToken cancellationToken) =>
        OpenAsync(connectionString, Pragmas, cancellationToken);

    /// <summary>A handle for the grouped bookkeeping writes (<see cref="BookkeepingPragmas"/>), from <see cref="BookkeepingConnectionString"/>.</summary>
    public static Task<SqliteConnection> OpenBookkeepingAsync(string bookkeepingConnectionString, CancellationToken cancellationToken) =>
        OpenAsync(bookkeepingConnectionString, BookkeepingPragmas, cancellationToken);

    private static async Task<SqliteConnection> OpenAsync(string connectionString, string pragmas, CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            SetUpOnce(connection, pragmas);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Runs the settings on a handle that has not had them (Microsoft.Data.Sqlite runs statements
    /// synchronously whichever method is called). A handle is marked only once they ran: one whose
    /// set-up failed is set up again at its next open.
    /// </summary>
    private static void SetUpOnce(SqliteConnection connection, string pragmas)
    {
        if (connection.Handle is not { } handle || SetUp.TryGetValue(handle, out _)) return;
        using var pragma = connection.CreateCommand();
        pragma.CommandText = pragmas;
        pragma.ExecuteNonQuery();
        // synchronous = NORMAL is safe in WAL mode only (in a rollback journal a power cut could damage
        // the file, the purse with it): a file that did not take WAL gets FULL on every handle.
        pragma.CommandText = "PRAGMA journal_mode";
        if (!string.Equals(pragma.ExecuteScalar() as string, "wal", StringComparison.OrdinalIgnoreCase))
        {
            pragma.CommandText = "PRAGMA synchronous = FULL";
            pragma.ExecuteNonQuery();
        }
        SetUp.AddOrUpdate(handle, Done);
    }
}
