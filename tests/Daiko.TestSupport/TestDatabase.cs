namespace Daiko.TestSupport;

/// <summary>The two stores every store contract runs on.</summary>
public enum StoreKind
{
    Sqlite,
    Postgres,
}

/// <summary>
/// Where one store-contract test keeps its data: its own temporary directory, holding a SQLite file
/// (<see cref="SqlitePath"/>), or a database of its own (<see cref="PostgresConnectionString"/>, made on first
/// use) on a PostgreSQL server the test process shares (started on first use, stopped when the process ends:
/// a cluster a test cost seconds of initdb and start). Disposing drops the database and deletes the directory.
/// The SQLite and PostgreSQL variants of a contract differ only in the <see cref="StoreKind"/> they pass.
/// </summary>
public sealed class TestDatabase(StoreKind kind, string prefix) : IDisposable
{
    private static readonly Lazy<Task<PostgresServer>> Shared = new(StartSharedAsync);

    private readonly TempDirectory _dir = new(prefix);
    private string? _database;
    private string? _connectionString;

    public StoreKind Kind => kind;

    /// <summary>The test's own directory (the SQLite file and anything else the test keeps).</summary>
    public string Directory => _dir.Path;

    public string SqlitePath => System.IO.Path.Combine(_dir.Path, "home.db");

    /// <summary>The test's own PostgreSQL database, made on first use.</summary>
    public string PostgresConnectionString => _connectionString ??= NewDatabase();

    private string NewDatabase()
    {
        var server = Shared.Value.GetAwaiter().GetResult();
        var name = $"t{Guid.NewGuid():N}";
        server.CreateDatabaseAsync(name).GetAwaiter().GetResult();
        _database = name;
        return server.ConnectionStringFor(name);
    }

    private static async Task<PostgresServer> StartSharedAsync()
    {
        var directory = new TempDirectory("daiko-pg-shared");
        var server = await PostgresServer.StartAsync(directory.Path);
        // The test host leaves little time to a process's end: the server is told to quit (a signal, no tool started) and
        // its directory removed.
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            server.Quit();
            // Its last processes may still write a file or two as they go.
            for (var i = 0; i < 40 && System.IO.Directory.Exists(directory.Path); i++)
            {
                directory.Dispose();
                if (System.IO.Directory.Exists(directory.Path)) Thread.Sleep(50);
            }
        };
        return server;
    }

    public void Dispose()
    {
        if (_database is { } name)
        {
            try
            {
                Shared.Value.GetAwaiter().GetResult().DropDatabaseAsync(name).GetAwaiter().GetResult();
            }
            catch (InvalidOperationException)
            {
                // Left for the server's end (its directory goes with it).
            }
        }
        _dir.Dispose();
    }
}
