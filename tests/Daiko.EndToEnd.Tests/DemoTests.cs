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
}
