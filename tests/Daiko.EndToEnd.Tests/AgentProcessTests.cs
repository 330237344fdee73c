using System.Diagnostics;
using Daiko.Cli.Commands;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// Which process 'terminal lock' stops for a terminal: its agent, however the terminal directory was spelled when it
/// started, and nothing else. A process whose command line is an agent's for this directory and that listens on the
/// directory's agent socket stands in for one.
/// </summary>
public sealed class AgentProcessTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-agent-process");

    public void Dispose() => _dir.Dispose();

    /// <summary>Listens on the socket in the directory given after --terminal, and says so.</summary>
    private const string Listener = "import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[4] + '/agent.sock')\ns.listen()\nprint('listening', flush=True)\ntime.sleep(600)";

    [Fact]
    public async Task TheAgentOfATerminal_IsKnownByItsDirectory_ThroughASymlinkToo_AndNoOtherProcessIs()
    {
        var terminal = Directory.CreateDirectory(Path.Combine(_dir.Path, "terminal")).FullName;
        var link = Path.Combine(_dir.Path, "link");
        File.CreateSymbolicLink(link, terminal);
        var other = Directory.CreateDirectory(Path.Combine(_dir.Path, "other")).FullName;
        // Started through the link, as 'terminal unlock --terminal link' starts its agent.
        using var agent = new ExternalProcess("/usr/bin/python3", ["-c", Listener, "terminal", "agent", "--terminal", link]);
        // An agent's command line for this directory, but not the process listening on its socket, as a stale pid file may
        // name ('; true' keeps bash from exec'ing sleep).
        using var lookalike = Process.Start(new ProcessStartInfo("bash") { ArgumentList = { "-c", "sleep 600; true", "terminal", "agent", "--terminal", terminal } })!;
        using var stranger = Process.Start("sleep", "600");
        try
        {
            await agent.WaitForOutputAsync("listening", TimeSpan.FromSeconds(10));
            Assert.True(AgentProcess.IsAgentOf(agent.Id, terminal));
            Assert.True(AgentProcess.IsAgentOf(agent.Id, link));
            Assert.False(AgentProcess.IsAgentOf(agent.Id, other));
            Assert.False(AgentProcess.IsAgentOf(lookalike.Id, terminal));
            Assert.False(AgentProcess.IsAgentOf(stranger.Id, terminal));
        }
        finally
        {
            lookalike.Kill(entireProcessTree: true);
            stranger.Kill();
        }
    }

    [Fact]
    public async Task AnAgentThatExitedAndWaitsToBeReaped_HasEnded_ALiveOneHasNot()
    {
        // sh starts 'sleep 0.1' in the background and becomes 'sleep 600', which never reaps it: a zombie, as an agent that
        // ended is until whatever reaps orphans gets to it.
        var parent = new ExternalProcess("sh", ["-c", "sleep 0.1 & echo \"child $!\"; exec sleep 600"]);
        try
        {
            await parent.WaitForOutputAsync("child ", TimeSpan.FromSeconds(10));
            var child = int.Parse(System.Text.RegularExpressions.Regex.Match(parent.Output, @"child (\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            var clock = Stopwatch.StartNew();
            while (!File.ReadAllText($"/proc/{child}/stat").Contains(") Z ", StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(20);

            Assert.True(Directory.Exists($"/proc/{child}"), "the zombie is still there, as Process.WaitForExit sees it");
            Assert.True(AgentProcess.HasEnded(child));
            Assert.False(AgentProcess.HasEnded(parent.Id));
            Assert.False(AgentProcess.HasEnded(Environment.ProcessId));
        }
        finally
        {
            parent.Dispose();
        }
        Assert.True(AgentProcess.HasEnded(int.MaxValue));
    }
}
