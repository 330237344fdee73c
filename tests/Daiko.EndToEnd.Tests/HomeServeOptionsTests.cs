using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>`home serve` refuses a retention it could not keep before it starts anything.</summary>
public sealed class HomeServeOptionsTests
{
    [Theory]
    [InlineData("--audit-days", "0", "--audit-days takes 1 to 36500")]
    [InlineData("--audit-days", "1000000", "--audit-days takes 1 to 36500")]
    [InlineData("--audit-max-lines", "99", "--audit-max-lines must be at least 100")]
    [InlineData("--audit-days", "a-year", "'a-year'")]
    public async Task AnAuditRetentionOutOfRange_IsAUsageMistake(string option, string value, string sentence)
    {
        using var dir = new TempDirectory("daiko-serve-options");
        // What `home serve` checks first, that DIR holds a home (nothing is started: the options are refused before).
        Directory.CreateDirectory(Path.Combine(dir.Path, "card"));
        File.WriteAllText(Path.Combine(dir.Path, "card", "card.json"), "{}");
        var result = await DaikoCli.RunAsync(["home", "serve", "--home", dir.Path, "--listen", "127.0.0.1:1", option, value], timeout: TimeSpan.FromSeconds(30));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(sentence, result.StandardError, StringComparison.Ordinal);
    }
}
