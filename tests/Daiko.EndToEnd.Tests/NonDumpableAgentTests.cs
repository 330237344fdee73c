using Daiko.Cli.Commands;
using Daiko.Terminal.Agent;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// The terminal agent keeps the unlocked key from the other processes of its own user, as ssh-agent does, and 'terminal
/// lock' still finds it. Run as an ordinary user (nobody): root passes every check this is about.
/// </summary>
public sealed class NonDumpableAgentTests(HomeAndTerminal system) : IClassFixture<HomeAndTerminal>, IDisposable
{
    private const int Nobody = 65534;
    private readonly TempDirectory _dir = new("daiko-non-dumpable");
    private readonly Dictionary<string, string> _environment = new();
    private string? _cli;

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task AnOrdinaryUsersAgent_IsClosedToTheUsersOtherProcesses_AndAFailedUnlockAndLockStillStopIt()
    {
        // Linux's: prctl, /proc and setpriv.
        if (!OperatingSystem.IsLinux()) return;
        var terminal = await EnrollForNobodyAsync();
        try
        {
            // A wrong access-card PIN: the agent says why on its stderr, and the unlock passes that on, as before.
            var wrongPin = await AsNobody(["terminal", "unlock", "--terminal", terminal], $"000000\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
            Assert.True(wrongPin.ExitCode == 1 && wrongPin.StandardError.Contains("2 tries left", StringComparison.Ordinal), wrongPin.ToString());
            Assert.Empty(AgentsOf(terminal));

            // A failed unlock stops the agent it started, which nothing else would: only finding it by its socket does.
            var failed = await AsNobody(["terminal", "unlock", "--terminal", terminal], $"{HomeAndTerminal.AccessPin}\n9999\n{HomeAndTerminal.Pin2}\n");
            Assert.True(failed.ExitCode != 0, failed.ToString());
            Assert.Empty(AgentsOf(terminal));
            AssertNoAgentFiles(terminal);

            var unlocked = await AsNobody(["terminal", "unlock", "--terminal", terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
            Assert.True(unlocked.ExitCode == 0, unlocked.ToString());
            Assert.DoesNotContain("warning", unlocked.StandardError, StringComparison.Ordinal);
            var agent = int.Parse(File.ReadAllText(TerminalAgent.PidPath(terminal)), System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal([agent], AgentsOf(terminal));

            // Another process of the same user: an ordinary one's memory, environment and directory it may read; the agent's not.
            // (The ordinary one is the looking shell's own child: a kernel that lets a process open only its descendants'
            // memory, Yama's ptrace_scope 1, lets it too; the environment and directory it does not restrict.)
            foreach (var look in Looks)
            {
                var control = await ProgramAsNobody(["sh", "-c", $"sleep 600 & p=$!; {string.Join(' ', look("$p"))} >/dev/null; r=$?; kill $p; exit $r"]);
                Assert.True(control.ExitCode == 0, $"{string.Join(' ', look("(a child)"))}: {control}");
                var refused = await ProgramAsNobody(look(agent.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                // (Not what it read in the message: the agent's environment.)
                Assert.True(refused.ExitCode != 0, $"{string.Join(' ', look(agent.ToString(System.Globalization.CultureInfo.InvariantCulture)))}: exit 0, the agent was open to it");
                Assert.Contains("Permission denied", refused.StandardError, StringComparison.Ordinal);
            }

            // A client that connects and leaves without a request (as 'terminal lock' looks for its agent) leaves it serving.
            Assert.Equal(0, (await ProgramAsNobody(["socat", "-u", "OPEN:/dev/null", $"UNIX-CONNECT:{TerminalAgent.SocketPath(terminal)}"])).ExitCode);
            var served = await AsNobody(["terminal", "appliance", "list", "--terminal", terminal, "--json"]);
            Assert.True(served.ExitCode == 0, served.ToString());

            var locked = await AsNobody(["terminal", "lock", "--terminal", terminal]);
            Assert.True(locked.ExitCode == 0, locked.ToString());
            Assert.True(AgentProcess.HasEnded(agent));
            Assert.Empty(AgentsOf(terminal));
            AssertNoAgentFiles(terminal);
        }
        finally
        {
            foreach (var left in AgentsOf(terminal))
            {
                using var process = System.Diagnostics.Process.GetProcessById(left);
                process.Kill();
            }
        }
    }

    /// <summary>Reading a process's environment, its working directory, and opening its memory (dd reads none of it).</summary>
    private static readonly Func<string, string[]>[] Looks =
    [
        pid => ["cat", $"/proc/{pid}/environ"],
        pid => ["readlink", "-v", $"/proc/{pid}/cwd"],
        pid => ["dd", $"if=/proc/{pid}/mem", "count=0", "status=none"],
    ];

    /// <summary>A terminal enrolled with the fixture's home server in a directory nobody owns, with a home directory of its own.</summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    private async Task<string> EnrollForNobodyAsync()
    {
        File.SetUnixFileMode(_dir.Path, (UnixFileMode)0x1ed /* 0755: nobody passes through to its directories */);
        var terminal = Path.Combine(_dir.Path, "terminal");
        var home = Directory.CreateDirectory(Path.Combine(_dir.Path, "home")).FullName;
        _environment["HOME"] = home;
        _environment["DOTNET_CLI_HOME"] = home;
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(system.Home, "nobody's laptop"))).StandardOutput.Trim();
        await HomeAndTerminal.Ok(["terminal", "enroll", "--terminal", terminal, "--home", $"127.0.0.1:{system.Port}", "--code", code], HomeAndTerminal.AccessPin + "\n");
        var chown = await DaikoCli.RunProgramAsync("chown", ["-R", $"{Nobody}:{Nobody}", terminal, home]);
        Assert.True(chown.ExitCode == 0, chown.ToString());
        // The build may sit where nobody cannot read it (a checkout under /root): then nobody runs a copy of it.
        if ((await ProgramAsNobody(["test", "-r", DaikoCli.DllPath])).ExitCode != 0)
        {
            var copy = Path.Combine(_dir.Path, "cli");
            var copied = await DaikoCli.RunProgramAsync("cp", ["-r", AppContext.BaseDirectory, copy]);
            Assert.True(copied.ExitCode == 0, copied.ToString());
            var opened = await DaikoCli.RunProgramAsync("chmod", ["-R", "a+rX", copy]);
            Assert.True(opened.ExitCode == 0, opened.ToString());
            _cli = Path.Combine(copy, "daiko.dll");
        }
        return terminal;
    }

    private Task<CliResult> AsNobody(string[] arguments, string? standardInput = null) => DaikoCli.RunAsUserAsync(Nobody, arguments, standardInput, _environment, _cli);

    private static Task<CliResult> ProgramAsNobody(string[] commandLine) => DaikoCli.RunProgramAsync("setpriv", DaikoCli.AsUser(Nobody, commandLine));

    /// <summary>The live processes that are an agent of <paramref name="terminal"/> by their command line.</summary>
    private static int[] AgentsOf(string terminal) =>
        Directory.GetDirectories("/proc")
            .Select(d => int.TryParse(Path.GetFileName(d), out var pid) ? pid : 0)
            .Where(pid => pid > 0 && !AgentProcess.HasEnded(pid) && CommandLine(pid).AsSpan().IndexOf(["terminal", "agent", "--terminal", terminal]) >= 0)
            .ToArray();

    private static string[] CommandLine(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/cmdline").Split('\0'); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }

    private static void AssertNoAgentFiles(string terminal)
    {
        Assert.False(File.Exists(TerminalAgent.SocketPath(terminal)), "the agent's socket is left");
        Assert.False(File.Exists(TerminalAgent.PidPath(terminal)), "the agent's pid file is left");
    }
}
