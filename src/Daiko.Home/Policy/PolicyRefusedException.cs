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
/// The command that changes a device's policy where it is kept: <c>daiko home device policy</c> on a
/// home server, <c>daiko host device policy --site DIR --owner NAME</c> for an owner on a hosted node.
/// </summary>
public sealed record PolicyCommand(string Base)
{
    public static readonly PolicyCommand Home = new("daiko home device policy");

    public static PolicyCommand Hosted(string owner) => new($"daiko host device policy --site DIR --owner {owner}");

    /// <summary>The command line for <paramref name="remedy"/>, naming the device when it is known.</summary>
    public string For(PolicyRemedy remedy, string? deviceName) =>
        deviceName is null ? $"{Base} {remedy.Option}" : $"{Base} --name {deviceName} {remedy.Option}";
}

/// <summary>
/// A request the owner's device policy forbids: answered <c>policy-refused</c> with the sentence and,
/// where the owner can change the rule, the command that does (<see cref="ReplyUnder"/>), and audited
/// with the rule that refused it (<see cref="PolicyRule"/>).
/// </summary>
public sealed class PolicyRefusedException(string rule, string sentence, PolicyRemedy? remedy = null)
    : Exception(Sentence(sentence, remedy, PolicyCommand.Home, null))
{
    public string Rule { get; } = rule;

    public PolicyRemedy? Remedy { get; } = remedy;

    /// <summary>The reply's message on a home server, naming no device: <c>policy-refused: </c> and the sentence naming the rule.</summary>
    public string Reply => "policy-refused: " + Message;

    /// <summary>The reply's message where the policy is changed with <paramref name="command"/>, for the device <paramref name="deviceName"/>.</summary>
    public string ReplyUnder(PolicyCommand command, string? deviceName) => "policy-refused: " + Sentence(sentence, Remedy, command, deviceName);

    /// <summary>The audit log's outcome for this refusal.</summary>
    public string AuditOutcome => $"refused by policy ({Rule})";

    private static string Sentence(string sentence, PolicyRemedy? remedy, PolicyCommand command, string? deviceName) =>
        remedy is null ? sentence : $"{sentence}; the owner can {remedy.Verb} with '{command.For(remedy, deviceName)}'";
}
