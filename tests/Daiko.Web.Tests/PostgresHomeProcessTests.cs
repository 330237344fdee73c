using Daiko.TestSupport;

namespace Daiko.Web.Tests;

/// <summary>
/// <c>home serve --postgres-file</c>: all of the home's state in a real PostgreSQL server, and the owner's
/// commands (device add, device list) reach the same store as the running server.
/// </summary>
public sealed class PostgresHomeProcessTests
{
    private sealed class HomeOnPostgres(string connectionFile) : HomeWithConsole
    {
        protected override IEnumerable<string> ServeOptions => ["--postgres-file", connectionFile];
    }

    [Fact]
    public async Task ADeviceAddedWhileServingFromPostgres_EnrollsAndUnlocks_AndHomeDbHoldsNoState()
    {
        using var work = new TempDirectory("daiko-pg-home");
        using var postgres = await PostgresServer.StartAsync(work.Path);
        var connectionFile = Path.Combine(work.Path, "store.conn");
        File.WriteAllText(connectionFile, postgres.ConnectionString);
        var system = new HomeOnPostgres(connectionFile);
        try
        {
            // Enrolls (device add after serve started) and unlocks the terminal: both need the device in the server's store.
            await system.InitializeAsync();

            var recorded = Path.Combine(system.Home, "postgres");
            Assert.Equal(postgres.ConnectionString, File.ReadAllText(recorded).Trim());
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(recorded));
            var list = await HomeWithConsole.Ok(["home", "device", "list", "--home", system.Home, "--json"]);
            Assert.Contains("\"phone\"", list.StandardOutput, StringComparison.Ordinal);
            Assert.DoesNotContain(postgres.ConnectionString, system.Server.ErrorOutput, StringComparison.Ordinal);
            Assert.False(File.Exists(Path.Combine(system.Home, "home.db")) && new FileInfo(Path.Combine(system.Home, "home.db")).Length > 0
                && File.ReadAllText(Path.Combine(system.Home, "home.db")).Contains("phone", StringComparison.Ordinal), "the device went to home.db");
        }
        finally
        {
            await system.DisposeAsync();
        }
    }

    [Fact]
    public async Task AnEmptyConnectionFile_IsRefusedWithASentence()
    {
        using var work = new TempDirectory("daiko-pg-home");
        var home = Path.Combine(work.Path, "home");
        await HomeWithConsole.Ok(["home", "init", "--home", home], $"{HomeWithConsole.Pin1}\n{HomeWithConsole.Pin2}\nadmin-code-123\n");
        var empty = Path.Combine(work.Path, "empty.conn");
        File.WriteAllText(empty, "\n");

        var result = await DaikoCli.RunAsync(["home", "serve", "--home", home, "--postgres-file", empty]);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("holds no PostgreSQL connection string", result.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(home, "postgres")));
    }
}
