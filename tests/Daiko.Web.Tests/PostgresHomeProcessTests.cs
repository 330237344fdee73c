using System.Text.RegularExpressions;
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
        var system = OnPostgres(work, postgres);
        try
        {
            // Enrolls (device add after serve started) and unlocks the terminal: both need the device in the server's store.
            await system.InitializeAsync();

            var recorded = Path.Combine(system.Home, "postgres");
            Assert.Equal(postgres.ConnectionString, File.ReadAllText(recorded).Trim());
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(recorded));
            var list = await HomeWithConsole.Ok(["home", "device", "list", "--home", system.Home, "--json"]);
            Assert.Contains("\"phone\"", list.StandardOutput, StringComparison.Ordinal);
            // No part of the connection string reaches the log (the whole string never would: its keys would).
            Assert.DoesNotContain("Username=", system.Server.ErrorOutput, StringComparison.OrdinalIgnoreCase);
            Assert.False(File.Exists(Path.Combine(system.Home, "home.db")) && new FileInfo(Path.Combine(system.Home, "home.db")).Length > 0
                && File.ReadAllText(Path.Combine(system.Home, "home.db")).Contains("phone", StringComparison.Ordinal), "the device went to home.db");
        }
        finally
        {
            await system.DisposeAsync();
        }
    }

    private static HomeOnPostgres OnPostgres(TempDirectory work, PostgresServer postgres)
    {
        var connectionFile = Path.Combine(work.Path, "store.conn");
        File.WriteAllText(connectionFile, postgres.ConnectionString);
        return new HomeOnPostgres(connectionFile);
    }

    /// <summary>
    /// A home server whose whole store is a real PostgreSQL server that goes down: a terminal's request is
    /// answered <c>unavailable</c> with a sentence (not <c>internal</c>), a new connection of an enrolled
    /// device is refused the same way (not taken for a stranger), a wrong PIN is still answered as one (its
    /// try was counted), the server stays up and says why in its log, and once the store is back the same
    /// requests are served.
    /// </summary>
    [Fact]
    public async Task WhileTheStoreIsDown_RequestsAreAnsweredUnavailable_AndServedAgainOnceItIsBack()
    {
        using var work = new TempDirectory("daiko-pg-outage");
        using var postgres = await PostgresServer.StartAsync(work.Path);
        var system = OnPostgres(work, postgres);
        try
        {
            await system.InitializeAsync();
            // A second device, enrolled but not unlocked: its commands open a connection of their own.
            var second = Path.Combine(system.Dir.Path, "second");
            var code = (await HomeWithConsole.Ok(LoopbackMarkets.DeviceAdd(system.Home, "tablet"))).StandardOutput.Trim();
            await HomeWithConsole.Ok(["terminal", "enroll", "--terminal", second, "--home", $"127.0.0.1:{system.Port}", "--code", code], HomeWithConsole.AccessPin + "\n");
            var history = await HomeWithConsole.Ok(["terminal", "wallet", "history", "--terminal", system.Terminal, "--json"]);
            // A third device's code, to be used while the store is down.
            var third = Path.Combine(system.Dir.Path, "third");
            var thirdCode = (await HomeWithConsole.Ok(LoopbackMarkets.DeviceAdd(system.Home, "watch"))).StandardOutput.Trim();

            await postgres.StopAsync();
            var down = System.Diagnostics.Stopwatch.StartNew();
            // The unlocked terminal's request, over its agent's open channel.
            var throughAgent = await DaikoCli.RunAsync(["terminal", "wallet", "history", "--terminal", system.Terminal, "--json"]);
            // An enrolled device's new connection: who it is cannot be looked up.
            var unlock = $"{HomeWithConsole.AccessPin}\n{HomeWithConsole.Pin1}\n{HomeWithConsole.Pin2}\n";
            var newConnection = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", second], unlock);

            Assert.True(throughAgent.ExitCode != 0, throughAgent.ToString());
            Assert.Contains("daiko: the home server cannot reach its store just now (down, restarting or overloaded); this request may have been done in part: try again shortly", throughAgent.StandardError, StringComparison.Ordinal);
            Assert.True(newConnection.ExitCode != 0, newConnection.ToString());
            Assert.Contains("the home server cannot reach its store just now", newConnection.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("not enrolled", newConnection.StandardError, StringComparison.Ordinal);
            await system.Server.WaitForOutputAsync("a control request 'wallet-history' met the store unavailable (answered 'unavailable';", TimeSpan.FromSeconds(10));
            await system.Server.WaitForOutputAsync("a control request 'connect' met the store unavailable (answered 'unavailable';", TimeSpan.FromSeconds(10));
            Assert.DoesNotContain("failed to handle", throughAgent.StandardError, StringComparison.Ordinal);
            // The outage's log lines name the failure (host and port at most), never the connection string's keys.
            Assert.DoesNotContain("Username=", system.Server.ErrorOutput, StringComparison.OrdinalIgnoreCase);

            // A wrong PIN over the agent's channel: the try is counted on the card, so the device is told so (and the
            // tries left), not "unavailable"; its audit line is in the server's log only.
            var wrongPin = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", system.Terminal], $"{HomeWithConsole.AccessPin}\nnot-the-pin1\n{HomeWithConsole.Pin2}\n");
            Assert.True(wrongPin.ExitCode != 0, wrongPin.ToString());
            Assert.Contains("daiko: wrong PIN1: 2 tries left", wrongPin.StandardError, StringComparison.Ordinal);
            await system.Server.WaitForOutputAsync("the audit line of a refused 'unlock' could not be stored", TimeSpan.FromSeconds(10));

            // An enrollment whose code cannot be looked up is refused with the sentence; the code is not used up (below).
            var enroll = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", third, "--home", $"127.0.0.1:{system.Port}", "--code", thirdCode], HomeWithConsole.AccessPin + "\n");
            Assert.True(enroll.ExitCode != 0, enroll.ToString());
            Assert.Contains("the home server cannot reach its store just now", enroll.StandardError, StringComparison.Ordinal);
            Assert.False(Directory.Exists(third), "a failed enrollment leaves no terminal directory");
            // A lock the store cannot record: the access card is locked and its agent stopped all the same, and the user is
            // told that the device's session with the home card was not ended there.
            var lockDuringOutage = await DaikoCli.RunAsync(["terminal", "lock", "--terminal", system.Terminal]);
            Assert.True(lockDuringOutage.ExitCode == 0, lockDuringOutage.ToString());
            Assert.Contains("the home server cannot reach its store just now", lockDuringOutage.StandardError, StringComparison.Ordinal);
            Assert.Contains("locking the access card anyway (this device's session with the home card, if one is open, ends at the home server's idle timeout)", lockDuringOutage.StandardError, StringComparison.Ordinal);
            Assert.False(File.Exists(Path.Combine(system.Terminal, "agent.sock")));

            // The watchers that poll the store several times a second say the outage once, not at every poll (and once
            // more a minute, should a loaded machine stretch the outage's steps above past one).
            await Task.Delay(TimeSpan.FromSeconds(2));
            var log = system.Server.ErrorOutput;
            var saidAtMost = 1 + (int)(down.Elapsed / Daiko.Home.Hosting.BackgroundLook.SayAgainEvery);
            Assert.InRange(Regex.Matches(log, "reading the revoked devices failed: ").Count, 1, saidAtMost);
            Assert.InRange(Regex.Matches(log, "reading the payees failed: ").Count, 1, saidAtMost);

            await postgres.StartAgainAsync();
            await system.Server.WaitForOutputAsync("reading the revoked devices works again, after ", TimeSpan.FromSeconds(30));
            // The same requests are served once the store is back, from the same server: nothing was lost.
            await HomeWithConsole.Ok(["terminal", "unlock", "--terminal", system.Terminal], unlock);
            var again = await HomeWithConsole.Ok(["terminal", "wallet", "history", "--terminal", system.Terminal, "--json"]);
            Assert.Equal(history.StandardOutput, again.StandardOutput);
            await HomeWithConsole.Ok(["terminal", "unlock", "--terminal", second], unlock);
            await HomeWithConsole.Ok(["terminal", "lock", "--terminal", second]);
            await HomeWithConsole.Ok(["terminal", "enroll", "--terminal", third, "--home", $"127.0.0.1:{system.Port}", "--code", thirdCode], HomeWithConsole.AccessPin + "\n");
            Assert.False(system.Server.HasExited);
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

    [Theory]
    [InlineData("Host=127.0.0.1;Port=1;Username=daiko;Database=daiko;Timeout=3", "PostgreSQL could not be used")]
    [InlineData("Hots=127.0.0.1;Port=5432", "the connection string is not one Npgsql reads")]
    public async Task AnUnreachableOrMalformedDatabase_LeavesTheHomeAsItWas_AndItsCommandsWorkOn(string connection, string said)
    {
        using var work = new TempDirectory("daiko-pg-home");
        var home = Path.Combine(work.Path, "home");
        await HomeWithConsole.Ok(["home", "init", "--home", home], $"{HomeWithConsole.Pin1}\n{HomeWithConsole.Pin2}\nadmin-code-123\n");
        var file = Path.Combine(work.Path, "wrong.conn");
        File.WriteAllText(file, connection + "\n");

        var result = await DaikoCli.RunAsync(["home", "serve", "--home", home, "--postgres-file", file]);
        var after = await DaikoCli.RunAsync(["home", "device", "list", "--home", home]);

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains($"{home} stays as it was: {said}", result.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("kept in PostgreSQL from now on", result.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(home, "postgres")));
        Assert.True(after.ExitCode == 0, after.ToString());
    }
}
