using Daiko.Home.Delegation;
using Daiko.Protocol;

namespace Daiko.Home.Policy;

/// <summary>
/// The modes a device may be served in: a forbidden mode is refused, never served in another one, and
/// <c>auto</c> chooses only among the allowed modes, cheapest first for what the market supports.
/// </summary>
public static class ModeChoice
{
    /// <summary>What auto tries, in order, for a market with this profile (each next one only when the one before cannot serve).</summary>
    public static IReadOnlyList<DelegationMode> AutoCandidates(MarketProfile? profile, IReadOnlySet<DelegationMode> allowed)
    {
        DelegationMode[] order = MarketProfiles.Choose(profile) switch
        {
            DelegationMode.Relay => [DelegationMode.Relay, DelegationMode.Assist],
            DelegationMode.Handoff => [DelegationMode.Handoff, DelegationMode.Relay, DelegationMode.Assist],
            _ => [DelegationMode.Resume, DelegationMode.Handoff, DelegationMode.Relay, DelegationMode.Assist],
        };
        var candidates = order.Where(allowed.Contains).ToList();
        return candidates.Count > 0 ? candidates : throw Forbidden(DelegationMode.Auto, allowed);
    }

    /// <summary>The modes to try for <paramref name="requested"/>: the chosen ones for auto, else the one asked for if allowed.</summary>
    public static IReadOnlyList<DelegationMode> Candidates(DelegationMode requested, MarketProfile? profile, IReadOnlySet<DelegationMode> allowed) =>
        requested == DelegationMode.Auto ? AutoCandidates(profile, allowed)
        : allowed.Contains(requested) ? [requested]
        : throw Forbidden(requested, allowed);

    public static PolicyRefusedException Forbidden(DelegationMode requested, IReadOnlySet<DelegationMode> allowed)
    {
        var modes = DevicePolicy.Join(new[] { DelegationMode.Resume, DelegationMode.Handoff, DelegationMode.Relay, DelegationMode.Assist }.Where(allowed.Contains).Select(m => m.ToWire()));
        return new PolicyRefusedException(PolicyRule.Modes, requested == DelegationMode.Auto
            ? $"this device may use no delegation mode that works with this market (its modes: {modes})"
            : $"this device may not use mode {requested.ToWire()} (its modes: {modes})",
            new PolicyRemedy(requested == DelegationMode.Auto ? "allow more" : "allow it", "--modes"));
    }

    /// <summary>Whether auto goes on to the next candidate after this failure (the mode could not serve; nothing the policy forbids).</summary>
    public static bool TryNext(Exception e) => e switch
    {
        DelegationException { Failure: DelegationFailure.NoTicketIssued } => true,
        PolicyRefusedException { Rule: PolicyRule.MaxTickets or PolicyRule.TicketLifetime } => true,
        _ => false,
    };
}
