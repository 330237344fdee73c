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
    private static readonly Lock Starting = new();
    private static Task<PostgresServer>? _shared;

    /// <summary>The process's server, started on first use (and again after a start that failed, rather than failing every test after it).</summary>
    private static Task<PostgresServer> Shared
    {
        get
        {
            lock (Starting)
            {
                if (_shared is null || _shared.IsFaulted || _shared.IsCanceled) _shared = StartSharedAsync();
                return _shared;
            }
        }
    }

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
        var server = Shared.GetAwaiter().GetResult();
        var name = $"t{Guid.NewGuid():N}";
        server.CreateDatabaseAsync(name).GetAwaiter().GetResult();
        _database = name;
        return server.ConnectionStringFor(name);
    }

    private static async Task<PostgresServer> StartSharedAsync()
    {
        var directory = new TempDirectory("daiko-pg-shared");
        var server = await PostgresServer.StartAsync(directory.Path);
        // However this process ends (a test host may end without running its exit handlers, or be killed), a watchdog in a
        // session of its own stops the server (SIGQUIT, its immediate shutdown) within half a second and removes its directory.
        const string watch = "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; kill -QUIT \"$2\" 2>/dev/null; "
            + "while kill -0 \"$2\" 2>/dev/null; do sleep 0.1; done; rm -rf \"$3\"";
        using var watchdog = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("setsid")
        {
            ArgumentList = { "sh", "-c", watch, "daiko-pg-watchdog", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture),
                server.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), directory.Path },
            UseShellExecute = false,
            // Not the test host's own output: nothing waits on the watchdog's ends of it.
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        });
        // The quick way when the process ends as it should: the watchdog then only removes the directory.
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server.Quit();
        return server;
    }

    public void Dispose()
    {
        if (_database is { } name)
        {
            try
            {
                Shared.GetAwaiter().GetResult().DropDatabaseAsync(name).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is InvalidOperationException or OperationCanceledException or System.ComponentModel.Win32Exception)
            {
                // Left for the server's end (its directory goes with it).
            }
        }
        _dir.Dispose();
    }
}
