namespace Daiko.Home.Policy;

/// <summary>The rules of a device policy, as refusals and the audit log name them.</summary>
public static class PolicyRule
{
    public const string Markets = "markets";
    public const string PrivateAddress = "markets (private address)";
    public const string Modes = "modes";
    public const string SpendLimit = "spend-limit";
    public const string MaxTickets = "max-tickets";
    public const string TicketLifetime = "ticket-lifetime";
    public const string OwnPayments = "own payments";
    public const string OpenRelays = "open relays";
    public const string Appliances = "appliances";
    public const string Payees = "payees";
}

/// <summary>What the owner would do to let a refused request through: a verb (<c>raise it</c>) and the policy's option.</summary>
public sealed record PolicyRemedy(string Verb, string Option);

/// <summary>
/// Who changes a device's policy, and with which command: the owner with <c>daiko home device policy</c> on a home
/// server; on a hosted node the site's operator, with <c>daiko host device policy --site DIR --owner NAME</c>.
/// </summary>
public sealed record PolicyCommand(string Who, string Base)
{
    public static readonly PolicyCommand Home = new("the owner", "daiko home device policy");

    public static PolicyCommand Hosted(string owner) => new("the site's operator", $"daiko host device policy --site DIR --owner {owner}");

    /// <summary>The command line for <paramref name="remedy"/>, naming the device when it is known (quoted for a shell where it must be).</summary>
    public string For(PolicyRemedy remedy, string? deviceName) =>
        deviceName is null ? $"{Base} {remedy.Option}" : $"{Base} --name {ShellWord(deviceName)} {remedy.Option}";

    /// <summary>
    /// A device name as one shell word: as it is when plain, else in double quotes with \, ", $ and ` escaped, and
    /// each ! outside them in single quotes (an interactive bash expands ! from its history even inside double quotes).
    /// </summary>
    private static string ShellWord(string word)
    {
        if (word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_')) return word;
        var quoted = new System.Text.StringBuilder("\"");
        foreach (var c in word) quoted.Append(c switch { '\\' or '"' or '$' or '`' => "\\" + c, '!' => "\"'!'\"", _ => c.ToString() });
        return quoted.Append('"').ToString();
    }
}

/// <summary>
/// A request the owner's device policy forbids: answered <c>policy-refused</c> with the sentence and,
/// where the rule can be changed, who changes it and with which command (<see cref="ReplyUnder"/>), and
/// audited with the rule that refused it (<see cref="PolicyRule"/>). <see cref="Exception.Message"/> is
/// the sentence alone (what a log line about it says, wherever the policy is kept).
/// </summary>
public sealed class PolicyRefusedException(string rule, string sentence, PolicyRemedy? remedy = null) : Exception(sentence)
{
    public string Rule { get; } = rule;

    public PolicyRemedy? Remedy { get; } = remedy;

    /// <summary>The reply's message on a home server, naming no device: <c>policy-refused: </c>, the sentence naming the rule and the remedy.</summary>
    public string Reply => ReplyUnder(PolicyCommand.Home, null);

    /// <summary>The reply's message where the policy is changed with <paramref name="command"/>, for the device <paramref name="deviceName"/>.</summary>
    public string ReplyUnder(PolicyCommand command, string? deviceName) =>
        Remedy is null ? "policy-refused: " + Message : $"policy-refused: {Message}; {command.Who} can {Remedy.Verb} with '{command.For(Remedy, deviceName)}'";

    /// <summary>The audit log's outcome for this refusal.</summary>
    public string AuditOutcome => $"refused by policy ({Rule})";
}
