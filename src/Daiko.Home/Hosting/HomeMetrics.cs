using System.Diagnostics.Metrics;
using Daiko.Cards;

namespace Daiko.Home.Hosting;

/// <summary>
/// The home server's operational counts, on the .NET metrics API (meter <c>Daiko.Home</c>); the web
/// side exports them in Prometheus text format at <c>/metrics</c>. Counts only: labels are modes,
/// outcomes and states, never a device, a market, a person or an amount.
/// </summary>
public static class HomeMetrics
{
    public const string MeterName = "Daiko.Home";

    private static readonly Meter Meter = new(MeterName);

    private static readonly Counter<long> Delegations = Meter.CreateCounter<long>("daiko_delegations_total", description: "Delegations answered, by mode and outcome.");

    private static readonly Histogram<double> Handshakes = Meter.CreateHistogram<double>("daiko_market_handshake_seconds", unit: "s", description: "Full handshakes of the home card with markets.");

    private static readonly Counter<long> CacheLookups = Meter.CreateCounter<long>("daiko_ticket_cache_lookups_total", description: "Session-ticket cache lookups, by result (hit or miss).");

    private static readonly Counter<long> PinFailures = Meter.CreateCounter<long>("daiko_pin_failures_total", description: "Wrong PINs given to the home card, by PIN.");

    private static readonly Counter<long> Payments = Meter.CreateCounter<long>("daiko_wallet_requests_total", description: "Wallet requests, by kind.");

    private static readonly Counter<long> PurseCommits = Meter.CreateCounter<long>("daiko_purse_commits_total", description: "Durable commits of the purse (concurrent money operations share one).");

    private static readonly Counter<long> PurseOperations = Meter.CreateCounter<long>("daiko_purse_committed_operations_total", description: "Money operations carried by the purse's commits.");

    /// <summary>Handshake latency buckets: loopback markets answer in milliseconds, distant ones in hundreds.</summary>
    public static readonly double[] HandshakeBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    public static void Delegation(string? mode, string outcome) =>
        Delegations.Add(1, new KeyValuePair<string, object?>("mode", mode ?? "none"), new KeyValuePair<string, object?>("outcome", outcome));

    public static void Handshake(TimeSpan elapsed) => Handshakes.Record(elapsed.TotalSeconds);

    public static void CacheLookup(bool hit) => CacheLookups.Add(1, new KeyValuePair<string, object?>("result", hit ? "hit" : "miss"));

    public static void PinFailure(string pin) => PinFailures.Add(1, new KeyValuePair<string, object?>("pin", pin));

    /// <summary>One durable commit of the purse that carried <paramref name="operations"/> money operations.</summary>
    public static void PurseCommit(int operations)
    {
        PurseCommits.Add(1);
        PurseOperations.Add(operations);
    }

    public static void WalletOperation(string kind) => Payments.Add(1, new KeyValuePair<string, object?>("kind", kind));

    /// <summary>
    /// Counts one audited event (every delegation, unlock and wallet request is audited once): the
    /// audit line's action, mode and outcome give the labels; device and market are dropped here.
    /// </summary>
    public static void Audited(string action, string? mode, string outcome)
    {
        switch (action)
        {
            case "delegate":
                Delegation(mode, outcome.StartsWith("failed", StringComparison.Ordinal) ? "failed" : outcome.StartsWith("no ticket", StringComparison.Ordinal) ? "fallback" : "ok");
                break;
            case "unlock" when outcome.StartsWith("wrong PIN", StringComparison.Ordinal):
                PinFailure(outcome["wrong ".Length..].ToLowerInvariant());
                break;
            case "console-pin2" when outcome.StartsWith("wrong PIN", StringComparison.Ordinal):
                PinFailure("pin2");
                break;
            case var wallet when wallet.StartsWith("wallet-", StringComparison.Ordinal):
                WalletOperation(wallet["wallet-".Length..]);
                break;
        }
    }

    /// <summary>
    /// The live gauges of one running server (control channels open, the card's state); dispose with
    /// the server. A separate meter per server (per owner on a hosted node); the web side sums them.
    /// </summary>
    public static IDisposable Gauges(Func<int> channelsOpen, IHomeCard card)
    {
        var meter = new Meter(MeterName + ".State");
        meter.CreateObservableGauge("daiko_control_channels_open", channelsOpen, description: "Control channels of terminals open now.");
        meter.CreateObservableGauge("daiko_card_state", () => Enum.GetValues<HomeCardState>().Select(s =>
            new Measurement<int>(card.State == s ? 1 : 0, new KeyValuePair<string, object?>("state", Handlers.CardGate.StateName(s)))),
            description: "Home cards in each state (a home server has one; a hosted node counts the owners it has loaded).");
        return meter;
    }
}
