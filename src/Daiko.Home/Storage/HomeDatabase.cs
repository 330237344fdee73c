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
    private const string Pragmas = "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL;";

    public static string ConnectionString(string databasePath) =>
        new SqliteConnectionStringBuilder { DataSource = databasePath, Pooling = true }.ToString();

    public static SqliteConnection Open(string connectionString)
    {
        var connection = new SqliteConnection(connectionString);
        connection.Open();
        using var pragma = connection.CreateCommand();
        pragma.CommandText = Pragmas;
        pragma.ExecuteNonQuery();
        return connection;
    }

    /// <summary>Opens the file in WAL mode (a persistent setting of the file, asked for on every open: it costs one statement).</summary>
    public static async Task<SqliteConnection> OpenAsync(string connectionString, CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            await using var pragma = connection.CreateCommand();
            pragma.CommandText = Pragmas + " PRAGMA journal_mode = WAL;";
            await pragma.ExecuteNonQueryAsync(cancellationToken);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }
}
