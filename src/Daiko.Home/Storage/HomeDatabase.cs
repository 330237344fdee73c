using Microsoft.Data.Sqlite;

namespace Daiko.Home.Storage;

/// <summary>
/// The home store's SQLite file (home.db): one place for how connections are opened — WAL, full
/// fsync on commit, and a busy timeout so that the home server and CLI commands can share the file.
/// </summary>
public static class HomeDatabase
{
    public static string ConnectionString(string databasePath) =>
        new SqliteConnectionStringBuilder { DataSource = databasePath, Pooling = false }.ToString();

    public static SqliteConnection Open(string connectionString)
    {
        var connection = new SqliteConnection(connectionString);
        connection.Open();
        using var pragma = connection.CreateCommand();
        pragma.CommandText = "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL;";
        pragma.ExecuteNonQuery();
        return connection;
    }
}
