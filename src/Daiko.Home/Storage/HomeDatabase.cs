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

    public static string ConnectionString(string databasePath) =>
        new SqliteConnectionStringBuilder { DataSource = databasePath, Pooling = true }.ToString();

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
            SetUpOnce(connection);
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>Opens the file in WAL mode (a persistent setting of the file, asked for once a handle).</summary>
    public static async Task<SqliteConnection> OpenAsync(string connectionString, CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            SetUpOnce(connection);
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
    private static void SetUpOnce(SqliteConnection connection)
    {
        if (connection.Handle is not { } handle || SetUp.TryGetValue(handle, out _)) return;
        using var pragma = connection.CreateCommand();
        pragma.CommandText = Pragmas;
        pragma.ExecuteNonQuery();
        SetUp.AddOrUpdate(handle, Done);
    }
}
