using Daiko.Hostile.Tests.Peers;
using Daiko.TestSupport;

namespace Daiko.Hostile.Tests;

/// <summary>
/// What another user of the same machine can see: the home and terminal directories and their files
/// (modes), and the enrollment code (the command line is public through ps and /proc).
/// </summary>
[Collection("hostile peers")]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class LocalUserTests(HomeServeProcess home)
{
    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    private static void AssertPrivate(string directory)
    {
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(directory));
        var entries = Directory.EnumerateFileSystemEntries(directory, "*", SearchOption.AllDirectories).ToList();
        Assert.NotEmpty(entries);
        foreach (var entry in entries)
        {
            Assert.True((File.GetUnixFileMode(entry) & GroupOrOther) == 0, $"{Path.GetRelativePath(directory, entry)} is {File.GetUnixFileMode(entry)}");
        }
    }

    [Fact]
    public async Task TheHomeDirectory_IsPrivate_AndLooserModesAreTightenedAtTheNextStart_SayingWhatChanged()
    {
        AssertPrivate(home.Home);
        var database = Path.Combine(home.Home, "home.db");
        Assert.True(File.Exists(database));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(database));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(home.Home, "home-identity.key")));

        // As an older version, or a careless copy, left it.
        File.SetUnixFileMode(home.Home, (UnixFileMode)Convert.ToInt32("755", 8));
        File.SetUnixFileMode(database, (UnixFileMode)Convert.ToInt32("644", 8));
        var next = await HomeServeProcess.Ok(["home", "device", "list", "--home", home.Home]);

        Assert.Contains("readable by other users; tightened", next.StandardError, StringComparison.Ordinal);
        Assert.Contains("home.db 0644→0600", next.StandardError, StringComparison.Ordinal);
        Assert.Contains("0755→0700", next.StandardError, StringComparison.Ordinal);
        AssertPrivate(home.Home);
        var quiet = await HomeServeProcess.Ok(["home", "device", "list", "--home", home.Home]);
        Assert.DoesNotContain("tightened", quiet.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ADirectoryAnotherUserOwns_OrOneUnderADirectoryOthersMayWrite_IsRefusedBeforeAnythingInItIsRead()
    {
        // Run as root, as the suite is: chown gives the directory to nobody.
        if (!OperatingSystem.IsLinux()) return;
        using var dir = new TempDirectory("daiko-hostile-owner");
        // Each looks like a home or a terminal (what another user would have put there); none is a working one.
        var theirs = Path.Combine(dir.Path, "theirs");
        Directory.CreateDirectory(Path.Combine(theirs, "card"));
        File.WriteAllText(Path.Combine(theirs, "card", "card.json"), "{}");
        Assert.Equal(0, (await ProgramAsync("chown", "-R", "65534:65534", theirs)).ExitCode);
        var open = Path.Combine(dir.Path, "open");
        Directory.CreateDirectory(Path.Combine(open, "home"));
        File.WriteAllText(Path.Combine(open, "home", "terminal.json"), "{}");
        File.SetUnixFileMode(open, (UnixFileMode)Convert.ToInt32("777", 8));
        var sticky = Path.Combine(dir.Path, "sticky");
        Directory.CreateDirectory(Path.Combine(sticky, "home", "card"));
        File.WriteAllText(Path.Combine(sticky, "home", "card", "card.json"), "{}");
        File.SetUnixFileMode(sticky, (UnixFileMode)Convert.ToInt32("1777", 8));

        var owned = await DaikoCli.RunAsync(["home", "device", "list", "--home", theirs]);
        var writable = await DaikoCli.RunAsync(["terminal", "lock", "--terminal", Path.Combine(open, "home")]);
        var underSticky = await DaikoCli.RunAsync(["home", "device", "list", "--home", Path.Combine(sticky, "home")]);

        Assert.True(owned.ExitCode == 2, owned.ToString());
        Assert.Contains($"{theirs} belongs to user 65534, not to you (0)", owned.StandardError, StringComparison.Ordinal);
        Assert.Contains("use a directory of your own", owned.StandardError, StringComparison.Ordinal);
        Assert.Equal([Path.Combine(theirs, "card")], Directory.EnumerateFileSystemEntries(theirs));
        Assert.True(writable.ExitCode == 2, writable.ToString());
        Assert.Contains($"{open} may be written by other users", writable.StandardError, StringComparison.Ordinal);
        // A sticky directory (as /tmp is) lets nobody rename another's entry: a home under it is used.
        Assert.True(underSticky.ExitCode == 0, underSticky.ToString());
        Assert.Contains("no terminal is enrolled", underSticky.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("cannot be trusted", underSticky.StandardError, StringComparison.Ordinal);
    }

    private static async Task<(int ExitCode, string Output)> ProgramAsync(string program, params string[] arguments)
    {
        using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(program, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, output);
    }

    [Fact]
    public async Task TheEnrollmentCode_IsReadFromStandardInput_AndTheTerminalDirectoryIsPrivate()
    {
        using var dir = new TempDirectory("daiko-hostile-terminal");
        var terminal = Path.Combine(dir.Path, "terminal");
        var code = await home.NewCodeAsync("stdin-phone");

        var enroll = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", terminal, "--home", $"127.0.0.1:{home.Port}"], $"{code}\n432100\n", TimeSpan.FromSeconds(120));

        Assert.True(enroll.ExitCode == 0, enroll.ToString());
        Assert.DoesNotContain("visible to other users", enroll.StandardError, StringComparison.Ordinal);
        AssertPrivate(terminal);

        var onTheCommandLine = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", Path.Combine(dir.Path, "second"), "--home", $"127.0.0.1:{home.Port}",
            "--code", await home.NewCodeAsync("argv-phone")], "432100\n", TimeSpan.FromSeconds(120));
        Assert.True(onTheCommandLine.ExitCode == 0, onTheCommandLine.ToString());
        Assert.Contains("visible to other users", onTheCommandLine.StandardError, StringComparison.Ordinal);

        // The console's URI (its QR code) is read from standard input too, with '--uri -'; on the command line it warns.
        var fromStdin = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", Path.Combine(dir.Path, "third"), "--uri", "-"],
            $"daiko-enroll://127.0.0.1:{home.Port}/{await home.NewCodeAsync("uri-phone")}\n432100\n", TimeSpan.FromSeconds(120));
        Assert.True(fromStdin.ExitCode == 0, fromStdin.ToString());
        Assert.DoesNotContain("visible to other users", fromStdin.StandardError, StringComparison.Ordinal);
        var uriOnTheCommandLine = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", Path.Combine(dir.Path, "fourth"),
            "--uri", $"daiko-enroll://127.0.0.1:{home.Port}/{await home.NewCodeAsync("argv-uri-phone")}"], "432100\n", TimeSpan.FromSeconds(120));
        Assert.True(uriOnTheCommandLine.ExitCode == 0, uriOnTheCommandLine.ToString());
        Assert.Contains("--uri on the command line is visible to other users", uriOnTheCommandLine.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Lock_WithTheAgentsFilesLeftBehind_StopsNoOtherProcessThatHasItsId()
    {
        using var dir = new TempDirectory("daiko-stale-agent");
        var terminal = Path.Combine(dir.Path, "terminal");
        var enroll = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", terminal, "--home", $"127.0.0.1:{home.Port}"],
            $"{await home.NewCodeAsync("stale-agent")}\n432100\n", TimeSpan.FromSeconds(120));
        Assert.True(enroll.ExitCode == 0, enroll.ToString());
        // The agent was killed (or the machine restarted): its socket and pid files stayed, and its id is another process's now.
        using var other = System.Diagnostics.Process.Start("sleep", "600");
        try
        {
            File.WriteAllText(Path.Combine(terminal, "agent.pid"), other.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            File.WriteAllText(Path.Combine(terminal, "agent.sock"), "");

            var locked = await DaikoCli.RunAsync(["terminal", "lock", "--terminal", terminal]);

            Assert.True(locked.ExitCode == 0, locked.ToString());
            Assert.False(other.WaitForExit(500), "terminal lock stopped a process that was not its agent");
            Assert.False(File.Exists(Path.Combine(terminal, "agent.pid")));
            Assert.False(File.Exists(Path.Combine(terminal, "agent.sock")));
        }
        finally
        {
            other.Kill();
        }
    }
}
