using System.Text.RegularExpressions;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>Every command's --help, as a new user reads it, walked from the top through each "Commands:" list.</summary>
public sealed partial class CliHelpTests
{
    [Fact]
    public async Task EveryCommandsHelp_HasAPurpose_Placeholders_AndAnExample_AndNoRequirementIds()
    {
        var problems = new List<string>();
        var queue = new Queue<string[]>([[]]);
        var seen = 0;
        while (queue.Count > 0 && seen < 80)
        {
            var path = queue.Dequeue();
            seen++;
            var result = await DaikoCli.RunAsync([.. path, "--help"]);
            var name = "daiko " + string.Join(' ', path);
            var help = result.StandardOutput;
            if (result.ExitCode != 0) { problems.Add($"{name} --help: exit {result.ExitCode}"); continue; }
            var purpose = help.Split('\n').SkipWhile(l => !l.StartsWith("Description:", StringComparison.Ordinal)).Skip(1).FirstOrDefault()?.Trim();
            if (string.IsNullOrEmpty(purpose)) problems.Add($"{name}: no one-line purpose");
            if (!Regex.IsMatch(help, @"Examples:\n  [^\n]*daiko ")) problems.Add($"{name}: no example");
            if (RequirementId().IsMatch(help)) problems.Add($"{name}: a requirement id in the help: {RequirementId().Match(help).Value}");
            foreach (Match m in Placeholder().Matches(help))
            {
                if (m.Groups[2].Value != m.Groups[2].Value.ToUpperInvariant() || string.Equals(m.Groups[1].Value, m.Groups[2].Value, StringComparison.OrdinalIgnoreCase))
                {
                    problems.Add($"{name}: the placeholder of {m.Value} does not say what goes there");
                }
            }
            var commands = help.Split("Commands:\n").ElementAtOrDefault(1)?.Split("\n\n")[0] ?? "";
            foreach (var line in commands.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.Length > 2 && l[2] != ' '))
            {
                var sub = line.Trim().Split(' ')[0];
                if (sub.Length > 0) queue.Enqueue([.. path, sub]);
            }
        }
        Assert.True(seen >= 30, $"only {seen} commands found");
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public async Task PinRules_AreStatedUpFront_WhereAPinIsSet()
    {
        foreach (var path in new[] { new[] { "home", "init" }, ["home", "card", "unblock"] })
        {
            var help = (await DaikoCli.RunAsync([.. path, "--help"])).StandardOutput;
            Assert.Contains("PIN1 and PIN2:", help, StringComparison.Ordinal);
            Assert.Contains("admin unblock code: at least", help, StringComparison.Ordinal);
        }
        Assert.Contains("Access-card PIN:", (await DaikoCli.RunAsync(["terminal", "enroll", "--help"])).StandardOutput, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"\(F\d+\)")]
    private static partial Regex RequirementId();

    [GeneratedRegex(@"(--[a-z0-9-]+) <([^>]+)>")]
    private static partial Regex Placeholder();
}
