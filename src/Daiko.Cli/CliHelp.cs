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
    public const int AccessPinMinimum = 6;
    public const int PinMaximum = 64;
    public const int AdminCodeMinimum = 8;

    public static string HomePinRules =>
        $"PIN1 and PIN2: {HomePinMinimum} to {PinMaximum} characters, different from each other; admin unblock code: at least {AdminCodeMinimum} characters.";

    public static string AccessPinRules => $"Access-card PIN: {AccessPinMinimum} to {PinMaximum} characters for a key file (a PKCS#11 access card keeps its token's own PIN rules).";

    public const string SecretsOnStdin = "Secrets are read from standard input, one a line, or prompted without echo on a terminal; never from the command line.";

    private static readonly ConditionalWeakTable<Command, string[]> ExamplesOf = new();

    /// <summary>Adds "Examples:" to the command's --help.</summary>
    public static T WithExamples<T>(this T command, params string[] examples) where T : Command
    {
        ExamplesOf.AddOrUpdate(command, examples);
        return command;
    }

    /// <summary>
    /// Makes --help print the default page, then the command's examples; gives every option that takes a
    /// value a placeholder that says what goes there, and the commands built elsewhere their examples.
    /// </summary>
    public static void Install(RootCommand root)
    {
        var help = root.Options.OfType<HelpOption>().First();
        if (help.Action is HelpAction inner) help.Action = new WithExamplesAction(inner);
        foreach (var command in All(root))
        {
            foreach (var option in command.Options.Where(o => o.Arity.MaximumNumberOfValues > 0 && o.ValueType != typeof(bool)))
            {
                // These take the same kind of value wherever they are made, so they read the same (as docs/cli.md writes them).
                if (SameKindEverywhere.TryGetValue(option.Name, out var kind))
                {
                    option.HelpName = kind;
                    continue;
                }
                if (option.HelpName is not null) continue;
                option.HelpName = Placeholders.TryGetValue(option.Name, out var name) ? name
                    : option.ValueType == typeof(FileInfo) ? "FILE"
                    : option.ValueType == typeof(int) || option.ValueType == typeof(long) ? "N"
                    : option.Name.TrimStart('-').ToUpperInvariant().Replace('-', '_');
            }
        }
        foreach (var (path, examples) in DefaultExamples)
        {
            var command = path.Split(' ').Aggregate((Command)root, (c, name) => c.Subcommands.FirstOrDefault(s => s.Name == name) ?? c);
            if (Examples(command).Count == 0) command.WithExamples(examples);
        }
    }

    private static readonly Dictionary<string, string> Placeholders = new(StringComparer.Ordinal)
    {
        ["--name"] = "NAME", ["--command"] = "COMMAND", ["--arg"] = "KEY=VALUE", ["--token-label"] = "LABEL",
        ["--subject"] = "DN", ["--key-type"] = "TYPE", ["--save-ticket"] = "FILE",
        ["--resume-from"] = "FILE", ["--kex"] = "KEX", ["--timeout"] = "SECONDS", ["--tls-version"] = "VERSION", ["--mode"] = "MODE",
    };

    /// <summary>Options whose value is the same kind of thing in every command: a PEM file, a PKCS#11 module (a shared object).</summary>
    private static readonly Dictionary<string, string> SameKindEverywhere = new(StringComparer.Ordinal)
    {
        ["--ca"] = "PEM", ["--cert"] = "PEM", ["--chain"] = "PEM", ["--key"] = "PEM", ["--console-cert"] = "PEM", ["--console-key"] = "PEM",
        ["--pkcs11-module"] = "SO",
    };

    private static readonly (string Path, string[] Examples)[] DefaultExamples =
    [
        ("", ["daiko demo", "daiko home init --home ~/daiko-home", "daiko terminal get https://market.example/ --terminal ~/.daiko"]),
        ("demo", ["daiko demo", "daiko demo --keep", "daiko demo --rounds 25"]),
        ("home", ["daiko home init --home ~/daiko-home --subject \"CN=Alice Example\"", "daiko home serve --home ~/daiko-home --listen 0.0.0.0:7443"]),
        ("terminal", ["daiko terminal unlock --terminal ~/.daiko", "daiko terminal get https://market.example/ --terminal ~/.daiko"]),
        ("tls", ["daiko tls get https://example.org/ --stats"]),
        ("tls get", ["daiko tls get https://example.org/ --stats",
            "daiko tls get https://market.example/ --ca roots.pem --cert me.pem --key me.key --save-ticket t.cbor",
            "daiko tls get https://market.example/ --ca roots.pem --resume-from t.cbor --kex psk_ke"]),
        ("terminal appliance list", ["daiko terminal appliance list --terminal ~/.daiko"]),
        ("terminal appliance state", ["daiko terminal appliance state --terminal ~/.daiko --name heater"]),
        ("terminal appliance command", ["daiko terminal appliance command --terminal ~/.daiko --name heater --command set-target --arg celsius=21"]),
    ];

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
