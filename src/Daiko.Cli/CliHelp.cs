using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Runtime.CompilerServices;

namespace Daiko.Cli;

/// <summary>
/// What every --help shows beyond System.CommandLine's own page: examples, and the rules for PINs
/// (kept here, in one place, so that a changed rule changes every page that states it).
/// </summary>
internal static class CliHelp
{
    public const int HomePinMinimum = 4;
    public const int AccessPinMinimum = 4;
    public const int PinMaximum = 64;
    public const int AdminCodeMinimum = 8;

    public static string HomePinRules =>
        $"PIN1 and PIN2: {HomePinMinimum} to {PinMaximum} characters, different from each other; admin unblock code: at least {AdminCodeMinimum} characters.";

    public static string AccessPinRules => $"Access-card PIN: {AccessPinMinimum} to {PinMaximum} characters.";

    public const string SecretsOnStdin = "Secrets are read from standard input, one a line, or prompted without echo on a terminal; never from the command line.";

    private static readonly ConditionalWeakTable<Command, string[]> ExamplesOf = new();

    /// <summary>Adds "Examples:" to the command's --help.</summary>
    public static T WithExamples<T>(this T command, params string[] examples) where T : Command
    {
        ExamplesOf.AddOrUpdate(command, examples);
        return command;
    }

    /// <summary>Makes --help print the default page, then the command's examples.</summary>
    public static void Install(RootCommand root)
    {
        var help = root.Options.OfType<HelpOption>().First();
        if (help.Action is HelpAction inner) help.Action = new WithExamplesAction(inner);
    }

    /// <summary>Every command of the tree (for checks that each has a purpose and an example).</summary>
    public static IEnumerable<Command> All(Command command) => command.Subcommands.SelectMany(All).Prepend(command);

    public static IReadOnlyList<string> Examples(Command command) => ExamplesOf.TryGetValue(command, out var e) ? e : [];

    private sealed class WithExamplesAction(HelpAction inner) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            var result = inner.Invoke(parseResult);
            var examples = Examples(parseResult.CommandResult.Command);
            var output = parseResult.InvocationConfiguration.Output;
            if (examples.Count > 0)
            {
                output.WriteLine("Examples:");
                foreach (var e in examples) output.WriteLine($"  {e}");
                output.WriteLine();
            }
            return result;
        }
    }
}
