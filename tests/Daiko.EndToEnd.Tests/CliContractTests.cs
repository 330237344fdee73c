using System.Text.RegularExpressions;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// docs/cli.md is the command's contract: scripts depend on every command and option it names. Each
/// command line of its code blocks is read (alternatives such as <c>add|list</c> expanded), and the built
/// <c>daiko</c> must know the command and show every option of that line in its <c>--help</c>.
/// </summary>
public sealed partial class CliContractTests
{
    /// <summary>The contract's command lines: the commands each names (more than one for <c>add|list</c>) and the options it names.</summary>
    public static IEnumerable<(string[][] Paths, string[] Options)> Contract()
    {
        var text = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "cli.md"));
        foreach (Match block in CodeBlock().Matches(text))
        {
            string[][]? paths = null;
            var options = new List<string>();
            foreach (var line in block.Groups[1].Value.Split('\n'))
            {
                if (line.StartsWith("daiko ", StringComparison.Ordinal))
                {
                    if (paths is not null) yield return (paths, [.. options]);
                    paths = Expand(line);
                    options.Clear();
                }
                foreach (Match o in Option().Matches(line)) options.Add(o.Value);
            }
            if (paths is not null) yield return (paths, [.. options]);
        }
    }

    /// <summary>The command words of a contract line (up to the first option, placeholder or note), one path for each alternative.</summary>
    private static string[][] Expand(string line)
    {
        var words = line["daiko ".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .TakeWhile(w => Word().IsMatch(w)).ToList();
        IEnumerable<string[]> paths = [[]];
        foreach (var word in words) paths = paths.SelectMany(p => word.Split('|').Select(alternative => (string[])[.. p, alternative]));
        return paths.ToArray();
    }

    [Fact]
    public async Task EveryCommandAndOptionOfTheContract_IsInTheCommandsHelp()
    {
        var contract = Contract().ToList();
        var problems = new List<string>();
        var helps = new Dictionary<string, string?>();
        foreach (var (paths, options) in contract)
        {
            var names = new List<string>();
            var shown = new List<string>();
            foreach (var path in paths)
            {
                var name = "daiko " + string.Join(' ', path);
                names.Add(name);
                if (!helps.TryGetValue(name, out var help))
                {
                    var result = await DaikoCli.RunAsync([.. path, "--help"]);
                    // A word the command does not know gets its parent's help: the usage line must name the whole command.
                    var known = result.ExitCode == 0 && result.StandardOutput.Contains($"Usage:\n  {name} ", StringComparison.Ordinal);
                    helps[name] = help = known ? result.StandardOutput : null;
                    if (help is null) problems.Add($"{name} is not a command (--help: exit {result.ExitCode}) {result.StandardError.Trim()}");
                }
                if (help is not null) shown.Add(help);
            }
            // On a line naming several commands (add|list), each option must belong to one of them.
            foreach (var option in options.Where(o => !shown.Any(help => Regex.IsMatch(help, $@"(^|[\s,]){Regex.Escape(o)}([\s,=<]|$)", RegexOptions.Multiline))))
            {
                problems.Add($"{string.Join(" | ", names)}: the contract names {option}, no --help shows it");
            }
        }
        // The contract reads as expected: a change to its layout must not leave this test checking nothing.
        Assert.True(helps.Count >= 40, $"only {helps.Count} commands read from the contract");
        Assert.Contains(contract, c => c.Paths.Any(p => p.SequenceEqual(["host", "serve"])) && c.Options.Contains("--console"));
        Assert.Contains(contract, c => c.Paths.Any(p => p.SequenceEqual(["home", "payee", "remove"])) && c.Options.Contains("--name"));
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [GeneratedRegex(@"```\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CodeBlock();

    [GeneratedRegex(@"--[a-z0-9][a-z0-9-]*")]
    private static partial Regex Option();

    [GeneratedRegex(@"^[a-z0-9][a-z0-9-]*(\|[a-z0-9][a-z0-9-]*)*$")]
    private static partial Regex Word();
}
