using System.Security.Cryptography;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>What must fail, fails clearly at the terminal, and nothing hangs.</summary>
public sealed class FailClosedProcessesTests : HomeTerminalAndNginx
{
    private Task<CliResult> GetAsync(string mode = "resume") =>
        DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{Market.Port}/whoami", "--terminal", Parts.Terminal, "--mode", mode], timeout: TimeSpan.FromSeconds(60));

    [Fact]
    public async Task AfterDone_TheTerminalMustUnlockAgain()
    {
        Assert.Equal(0, (await GetAsync()).ExitCode);
        await HomeAndTerminal.Ok(["terminal", "lock", "--terminal", Parts.Terminal]);
        var status = await HomeAndTerminal.Ok(["home", "card", "status", "--home", Parts.Home, "--json"]);
        Assert.Contains("\"remote-access-wait\"", status.StandardOutput, StringComparison.Ordinal);

        var result = await GetAsync();

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("terminal unlock", result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RevokedDevice_IsRefused()
    {
        Assert.Equal(0, (await GetAsync("relay")).ExitCode);
        await HomeAndTerminal.Ok(["home", "device", "revoke", "--home", Parts.Home, "--name", "phone"]);
        await Task.Delay(TimeSpan.FromSeconds(1));

        var result = await GetAsync("relay");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("revoked", result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HomeServerRestart_LeavesTheCardLocked_AndTheTerminalIsToldSo()
    {
        Assert.Equal(0, (await GetAsync()).ExitCode);
        Parts.Server.Dispose();
        var down = await GetAsync();
        Assert.Equal(1, down.ExitCode);
        Assert.Contains("unreachable", down.StandardError, StringComparison.Ordinal);

        await Parts.StartServerAsync();
        var locked = await GetAsync();

        Assert.Equal(1, locked.ExitCode);
        Assert.Contains("locked", locked.StandardError, StringComparison.Ordinal);
        await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
        Assert.Equal(0, (await GetAsync()).ExitCode);
    }

    [Fact]
    public async Task PinChange_TakesTheOldAndTheNewPinOnStdin_AndOnlyTheNewOneUnlocks()
    {
        await HomeAndTerminal.Ok(["terminal", "lock", "--terminal", Parts.Terminal]);
        string[] change = ["terminal", "pin", "change", "--terminal", Parts.Terminal];

        var tooShort = await DaikoCli.RunAsync(change, $"{HomeAndTerminal.AccessPin}\n12345\n");
        Assert.Equal(1, tooShort.ExitCode);
        Assert.Contains("6 to 64 characters", tooShort.StandardError, StringComparison.Ordinal);
        var wrong = await DaikoCli.RunAsync(change, "000000\nnew-pin-77\n");
        Assert.Equal(1, wrong.ExitCode);
        Assert.Contains("2 tries left", wrong.StandardError, StringComparison.Ordinal);
        Assert.Contains("access-card PIN changed", (await HomeAndTerminal.Ok(change, $"{HomeAndTerminal.AccessPin}\nnew-pin-77\n")).StandardOutput, StringComparison.Ordinal);

        var old = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
        Assert.Equal(1, old.ExitCode);
        await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", Parts.Terminal], $"new-pin-77\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
        Assert.DoesNotContain("new-pin-77", wrong.StandardError + wrong.StandardOutput + old.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// Wrong PINs given while the card is ready and in use (each delegation resets the idle clock, which
    /// is written to the card's state file at most once a second) survive SIGKILL of the home server right
    /// after the terminal read the answer: every count is durable before it is answered.
    /// </summary>
    [Fact]
    public async Task WrongPin2ThenWrongPin1_WhileDelegating_ThenKill9_KeepBothCounts()
    {
        for (var i = 0; i < 3; i++)
        {
            var get = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{Market.Port}/whoami", "--terminal", Parts.Terminal, "--mode", "handoff"], timeout: TimeSpan.FromSeconds(60));
            Assert.True(get.ExitCode == 0, get.ToString());
        }
        var wrong2 = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n0000\n");
        Assert.Contains("wrong PIN2: 2 tries left", wrong2.StandardError, StringComparison.Ordinal);
        var wrong1 = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n9999\n{HomeAndTerminal.Pin2}\n");
        Assert.Contains("wrong PIN1: 2 tries left", wrong1.StandardError, StringComparison.Ordinal);

        Parts.Server.Kill(); // SIGKILL the moment the answer was read: no shutdown code runs
        await Parts.StartServerAsync();

        var status = await HomeAndTerminal.Ok(["home", "card", "status", "--home", Parts.Home, "--json"]);
        Assert.Contains("\"pin1_tries_left\":2", status.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("\"pin2_tries_left\":2", status.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// A hand-out's audit line is committed before its answer leaves (the bookkeeping does not wait for
    /// the disk, but it does for the commit): a SIGKILL the moment the terminal read the answer loses none.
    /// </summary>
    [Fact]
    public async Task EveryHandOversAuditLine_SurvivesKill9TheMomentTheAnswerWasRead()
    {
        for (var i = 0; i < 3; i++)
        {
            var get = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{Market.Port}/whoami", "--terminal", Parts.Terminal, "--mode", "handoff"], timeout: TimeSpan.FromSeconds(60));
            Assert.True(get.ExitCode == 0, get.ToString());
        }
        Parts.Server.Kill(); // SIGKILL: no shutdown code runs, no flush

        var audit = await Daiko.Home.Storage.HomeStore.ForHome(Parts.Home).Audit.RecentAsync(100);
        Assert.Equal(3, audit.Count(e => e.Action == "delegate" && e.Mode == "handoff" && e.Outcome == "secrets handed over"));
    }

    [Fact]
    public async Task WrongPins_AreCountedAndTheThirdDisablesTheCard()
    {
        await HomeAndTerminal.Ok(["terminal", "lock", "--terminal", Parts.Terminal]);
        for (var i = 0; i < 2; i++)
        {
            var wrong = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n999{i}\n");
            Assert.Equal(1, wrong.ExitCode);
            Assert.Contains($"{2 - i} {(i == 1 ? "try" : "tries")} left", wrong.StandardError, StringComparison.Ordinal);
        }
        var third = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n9999\n");
        Assert.Contains("disabled", third.StandardError, StringComparison.Ordinal);
        var status = await HomeAndTerminal.Ok(["home", "card", "status", "--home", Parts.Home, "--json"]);
        Assert.Contains("\"disabled\"", status.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("9999", third.StandardError + third.StandardOutput, StringComparison.Ordinal);
    }
}

/// <summary>PIN counters survive the home server being killed with SIGKILL between attempts.</summary>
public sealed class CounterPersistenceTests : IAsyncLifetime
{
    private readonly HomeAndTerminal Parts = new();

    public Task InitializeAsync() => Parts.InitializeAsync();

    public Task DisposeAsync() => Parts.DisposeAsync();

    [Fact]
    public async Task WrongPin_ThenKill9_ThenRestart_KeepsTheCount()
    {
        await HomeAndTerminal.Ok(["terminal", "lock", "--terminal", Parts.Terminal]);
        var wrong = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n0000\n");
        Assert.Contains("2 tries left", wrong.StandardError, StringComparison.Ordinal);

        Parts.Server.Kill(); // SIGKILL: no shutdown code runs
        await Parts.StartServerAsync();

        var status = await HomeAndTerminal.Ok(["home", "card", "status", "--home", Parts.Home, "--json"]);
        Assert.Contains("\"pin2_tries_left\":2", status.StandardOutput, StringComparison.Ordinal);
        var again = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n0001\n");
        Assert.Contains("1 try left", again.StandardError, StringComparison.Ordinal);
    }
}

/// <summary>Wrong PINs from several processes at once: the counter is shared through the card's state file, never a fourth try.</summary>
public sealed class CrossProcessPinRaceTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-pin-race");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task SixProcessesGuessingPin2_GetExactlyThreeTries_AndTheCardEndsDisabled()
    {
        var home = Path.Combine(_dir.Path, "home");
        var pki = TestPki.Create(Path.Combine(_dir.Path, "pki"));
        await HomeAndTerminal.InitHomeAsync(home);
        var certPath = HomeAndTerminal.IssueUserCertificate(pki, home, Path.Combine(_dir.Path, "user.pem"));

        var guesses = await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            DaikoCli.RunAsync(["home", "cert", "import", "--home", home, "--cert", certPath, "--chain", pki.RootPath], $"99{i:00}\n")));

        var report = string.Join("\n---\n", guesses.Select(g => $"exit {g.ExitCode}: {g.StandardError.Trim()}"));
        Assert.True(guesses.All(g => g.ExitCode == 1), report);
        Assert.True(guesses.Count(g => g.StandardError.Contains("wrong PIN2", StringComparison.Ordinal)) == 3, report);
        // Attempts are checked one at a time across processes: the fourth and later never reach the token.
        Assert.True(guesses.Count(g => g.StandardError.Contains("2 tries left", StringComparison.Ordinal)) == 1, report);
        Assert.True(guesses.Count(g => g.StandardError.Contains("1 try left", StringComparison.Ordinal)) == 1, report);
        Assert.True(guesses.Count(g => g.StandardError.Contains("now disabled", StringComparison.Ordinal)) == 1, report);
        Assert.True(guesses.Count(g => g.StandardError.Contains("the card is disabled after 3 wrong PINs", StringComparison.Ordinal)) == 3, report);
        var status = await HomeAndTerminal.Ok(["home", "card", "status", "--home", home, "--json"]);
        Assert.Contains("\"disabled\"", status.StandardOutput, StringComparison.Ordinal);
        var right = await DaikoCli.RunAsync(["home", "cert", "import", "--home", home, "--cert", certPath, "--chain", pki.RootPath], HomeAndTerminal.Pin2 + "\n");
        Assert.Equal(1, right.ExitCode);
        Assert.Contains("disabled", right.StandardError, StringComparison.Ordinal);
    }
}

/// <summary>A damaged database gets one clear sentence, no stack trace, and is left as it was.</summary>
public sealed class CorruptStoreTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-corrupt");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task ADamagedHomeDatabase_IsReportedClearly_AndNotOverwritten()
    {
        var home = Path.Combine(_dir.Path, "home");
        await HomeAndTerminal.InitHomeAsync(home);
        await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(home, "phone"));
        var database = Path.Combine(home, "home.db");
        var garbage = RandomNumberGenerator.GetBytes(4096);
        File.WriteAllBytes(database, garbage);

        var list = await DaikoCli.RunAsync(["home", "device", "list", "--home", home]);
        var serve = await DaikoCli.RunAsync(["home", "serve", "--home", home, "--listen", $"127.0.0.1:{Loopback.FreePort()}"], timeout: TimeSpan.FromSeconds(30));

        foreach (var result in new[] { list, serve })
        {
            Assert.Equal(1, result.ExitCode);
            Assert.Contains("database file is damaged", result.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", result.StandardError, StringComparison.Ordinal);
        }
        Assert.Equal(garbage, File.ReadAllBytes(database));
    }
}
