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

/// <summary>
/// A request the owner's device policy forbids: answered <c>policy-refused</c> with the sentence, and
/// audited with the rule that refused it (<see cref="PolicyRule"/>).
/// </summary>
public sealed class PolicyRefusedException(string rule, string sentence) : Exception(sentence)
{
    public string Rule { get; } = rule;

    /// <summary>The reply's message: <c>policy-refused: </c> and the sentence naming the rule.</summary>
    public string Reply => "policy-refused: " + Message;

    /// <summary>The audit log's outcome for this refusal.</summary>
    public string AuditOutcome => $"refused by policy ({Rule})";
}
