using System.Diagnostics;

namespace Daiko.TestSupport;

/// <summary>
/// A real PostgreSQL server (Debian's postgresql) in a private data directory on 127.0.0.1 and a free
/// port, started for a test and stopped (immediately) on dispose. As root, it runs as the postgres user.
/// </summary>
public sealed class PostgresServer : IDisposable
{
    private readonly string _dataDirectory;
    private readonly string _binaries;
    private readonly bool _asPostgresUser;

    private PostgresServer(string dataDirectory, string binaries, int port, bool asPostgresUser)
    {
        _dataDirectory = dataDirectory;
        _binaries = binaries;
        Port = port;
        _asPostgresUser = asPostgresUser;
    }

    public int Port { get; }

    /// <summary>The postmaster's process id (postmaster.pid's first line): its backends are its children.</summary>
    public int ProcessId => int.Parse(File.ReadLines(Path.Combine(_dataDirectory, "postmaster.pid")).First(), System.Globalization.CultureInfo.InvariantCulture);

    public string ConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres;Pooling=false;Timeout=10";

    /// <summary>The connection string for database <paramref name="database"/> of this server.</summary>
    public string ConnectionStringFor(string database) => ConnectionString.Replace("Database=postgres", $"Database={database}", StringComparison.Ordinal);

    /// <summary>Creates an empty database (a copy of template1).</summary>
    public Task CreateDatabaseAsync(string name) => PgAsync("createdb", ["-h", "127.0.0.1", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", "postgres", name]);

    /// <summary>Drops a database, ending any connection still open to it.</summary>
    public Task DropDatabaseAsync(string name) => PgAsync("dropdb", ["-h", "127.0.0.1", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", "postgres", "--force", name]);

    public static bool Available => FindBinaries() is not null;

    public static async Task<PostgresServer> StartAsync(string workDirectory)
    {
        var binaries = FindBinaries() ?? throw new InvalidOperationException("PostgreSQL is not installed (apt-get install postgresql)");
        var root = Environment.UserName == "root";
        var data = Path.Combine(workDirectory, $"pg-{Guid.NewGuid():N}");
        Directory.CreateDirectory(data);
        if (root && !OperatingSystem.IsWindows())
        {
            await RunAsync("chown", ["-R", "postgres:postgres", workDirectory]);
            File.SetUnixFileMode(workDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        }
        var port = Loopback.FreePort();
        var server = new PostgresServer(data, binaries, port, root);
        await server.PgAsync("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        await server.StartAgainAsync();
        return server;
    }

    /// <summary>Starts the server (again, after <see cref="StopAsync"/>) on the same port and data.</summary>
    public Task StartAgainAsync() => PgAsync("pg_ctl", ["-D", _dataDirectory, "-l", Path.Combine(_dataDirectory, "server.log"), "-w", "-t", "30",
        "-o", $"-p {Port} -k {_dataDirectory} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300", "start"]);

    /// <summary>Stops the server at once (an outage); <see cref="StartAgainAsync"/> brings it back.</summary>
    public Task StopAsync() => PgAsync("pg_ctl", ["-D", _dataDirectory, "-m", "immediate", "-w", "stop"]);

    private static string? FindBinaries() =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(b => File.Exists(Path.Combine(b, "initdb"))).OrderDescending().FirstOrDefault()
            : null;

    private Task PgAsync(string tool, string[] args) => _asPostgresUser
        ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_binaries, tool), .. args])
        : RunAsync(Path.Combine(_binaries, tool), args);

    private static async Task RunAsync(string file, string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed: {await output}{await error}");
    }

    /// <summary>
    /// Ends the server at once without waiting on a tool (SIGQUIT to the postmaster: its immediate shutdown, which ends
    /// its backends too), for a process that is itself ending and has little time left.
    /// </summary>
    public void Quit()
    {
        try
        {
            _ = SendSignal(ProcessId, 3);
        }
        catch (Exception e) when (e is IOException or FormatException or InvalidOperationException)
        {
            // Not running.
        }
    }

#pragma warning disable SYSLIB1054 // LibraryImport needs unsafe code, which this assembly does not allow
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);
#pragma warning restore SYSLIB1054

    public void Dispose()
    {
        try { StopAsync().GetAwaiter().GetResult(); }
        catch (Exception) { }
    }
}
