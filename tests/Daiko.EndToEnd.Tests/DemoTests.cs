using System.Diagnostics;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

public sealed class DemoTests
{
    [Fact]
    public async Task Demo_RunsEveryStep_AndExitsZero()
    {
        var result = await DaikoCli.RunAsync(["demo"], timeout: TimeSpan.FromMinutes(3));

        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var expected in new[] { "resume mode", "handoff mode", "relay mode", "assist mode", "every step worked" })
        {
            Assert.Contains(expected, result.StandardOutput, StringComparison.Ordinal);
        }
        Assert.Contains("balance after cancellation: 10000 JPY", result.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("policy-refused: this device may not pay 'kiosk.demo' (its payees: market.demo)", result.StandardOutput, StringComparison.Ordinal);

        // The mail as the SMTP sink received it, quoted by the demo: the subject and every kind of entry.
        var at = result.StandardOutput.IndexOf("mail that arrived:", StringComparison.Ordinal);
        Assert.True(at >= 0, "the demo shows no mail that arrived");
        var mail = result.StandardOutput[at..].Split('\n').Skip(1).TakeWhile(l => l.StartsWith("       ", StringComparison.Ordinal)).ToList();
        Assert.Matches(@"^\s+Subject: Daiko payment log: [1-9]\d* entries", mail[0]);
        foreach (var kind in new[] { "refill", "payment", "cancellation" })
        {
            Assert.Contains(mail, l => l.Contains("  " + kind + " ", StringComparison.Ordinal));
        }
        Assert.Contains(mail, l => l.Trim() == "log intact: yes");
    }

    /// <summary>
    /// The demo's delegation steps, again and again over one control channel: each relay and handoff
    /// torn down while the next request goes out (where the channel used to break now and then).
    /// </summary>
    [Fact]
    public async Task Demo_DelegationStepsRepeated_NeverBreakTheControlChannel()
    {
        const int rounds = 25;
        var result = await DaikoCli.RunAsync(["demo", "--rounds", rounds.ToString(System.Globalization.CultureInfo.InvariantCulture)], timeout: TimeSpan.FromMinutes(6),
            environment: new Dictionary<string, string> { ["DAIKO_DEBUG"] = "1" });

        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var mode in new[] { "resume", "handoff", "relay", "assist" })
        {
            Assert.Contains($"fetching /whoami in {mode} mode (round {rounds} of {rounds})", result.StandardOutput, StringComparison.Ordinal);
        }
        Assert.Contains("every step worked", result.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Demo_Sigint_SaysInterrupted_AndExits130()
    {
        // A background child of a non-interactive shell inherits SIGINT ignored; a person's Ctrl-C
        // reaches a process whose SIGINT is at its default, so start the demo that way.
        var info = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])", "dotnet", DaikoCli.DllPath, "demo" })
        {
            info.ArgumentList.Add(a);
        }
        using var demo = Process.Start(info)!;
        var stdout = new System.Text.StringBuilder();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        demo.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (stdout) stdout.AppendLine(e.Data);
            if (e.Data.StartsWith("[ 2]", StringComparison.Ordinal)) started.TrySetResult();
        };
        demo.BeginOutputReadLine();
        var stderr = demo.StandardError.ReadToEndAsync();
        try
        {
            await started.Task.WaitAsync(TimeSpan.FromMinutes(2));
            using (var kill = Process.Start("kill", ["-INT", demo.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync();
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await demo.WaitForExitAsync(deadline.Token);
        }
        finally
        {
            if (!demo.HasExited) demo.Kill(entireProcessTree: true);
        }

        var output = $"stdout:\n{stdout}\nstderr:\n{await stderr}";
        Assert.True(demo.ExitCode == 130, $"exit {demo.ExitCode}\n{output}");
        Assert.Contains("daiko: interrupted", await stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("every step worked", stdout.ToString(), StringComparison.Ordinal);
    }
}
