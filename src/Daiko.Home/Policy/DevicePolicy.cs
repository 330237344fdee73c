using System.Globalization;
using Daiko.Protocol;

namespace Daiko.Home.Policy;

/// <summary>
/// What the owner lets one device do (<c>daiko home device policy</c>): the markets it may use, the
/// delegation modes, how much it may spend a day and which payees it may pay, how many tickets it may
/// hold per market and for how long, and the appliances it may control. Every device starts with <see cref="Default"/>.
/// </summary>
public sealed record DevicePolicy(
    IReadOnlyList<MarketPattern> Markets,
    IReadOnlySet<DelegationMode> Modes,
    long? SpendLimitPerDay,
    int MaxTickets,
    TimeSpan? TicketLifetime,
    IReadOnlyList<string>? Appliances)
{
    /// <summary>The longest a ticket may live (RFC 8446 §4.6.1), and so the longest a device may hold one.</summary>
    public static readonly TimeSpan LongestTicketLifetime = TimeSpan.FromDays(7);

    public const int DefaultMaxTickets = 4;

    public static readonly IReadOnlySet<DelegationMode> AllModes =
        new HashSet<DelegationMode> { DelegationMode.Resume, DelegationMode.Handoff, DelegationMode.Relay, DelegationMode.Assist };

    /// <summary>
    /// The declared payees (<c>daiko home payee</c>, role market) this device may pay, by name; null for
    /// every declared one. A refill or a cancellation brings money in and is not held to it.
    /// </summary>
    public IReadOnlyList<string>? Payees { get; init; }

    /// <summary>Any public market, all four modes, no spend limit, every declared payee, 4 tickets per market, the market's own ticket lifetime, every appliance.</summary>
    public static readonly DevicePolicy Default = new([MarketPattern.AnyPublic], AllModes, null, DefaultMaxTickets, null, null);

    /// <summary>The longest lifetime a ticket handed to this device may have left.</summary>
    public TimeSpan TicketLifetimeOrLongest => TicketLifetime ?? LongestTicketLifetime;

    /// <summary>The rules tickets are handed out under (markets, modes, count, lifetime), as one comparable text.</summary>
    public string TicketTerms => $"{MarketsText}|{ModesText}|{MaxTickets}|{TicketLifetime?.Ticks}";

    /// <summary>
    /// Whether the market list may allow a market of this name on some port, judged by the name alone (an address or
    /// block entry may allow any name by the addresses it resolves to, which only a connection's judgement looks up).
    /// </summary>
    public bool MayNameMarket(string host) => Markets.Any(m => m.CanCoverAddresses || m.MatchesNameOnAnyPort(host));

    public bool AllowsAppliance(string name) => Appliances is null || Appliances.Contains(name, StringComparer.Ordinal);

    public bool AllowsPayee(string name) => Payees is null || Payees.Contains(name, StringComparer.Ordinal);

    /// <summary>The list as the CLI and the store write it.</summary>
    public static string Join(IEnumerable<string> items) => string.Join(",", items) is { Length: > 0 } s ? s : "none";

    public string MarketsText => Join(Markets.Select(m => m.Text));

    public string ModesText => Join(new[] { DelegationMode.Resume, DelegationMode.Handoff, DelegationMode.Relay, DelegationMode.Assist }.Where(Modes.Contains).Select(m => m.ToWire()));

    public string AppliancesText => Appliances is null ? "*" : Join(Appliances);

    public string PayeesText => Payees is null ? "*" : Join(Payees);

    /// <summary>Splits a comma-separated list; <c>none</c> (or nothing) is the empty list.</summary>
    public static IReadOnlyList<string> Split(string list)
    {
        var items = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return items is ["none"] ? [] : items;
    }

    public static IReadOnlyList<MarketPattern> ParseMarkets(string list) => Split(list).Select(MarketPattern.Parse).ToList();

    public static IReadOnlySet<DelegationMode> ParseModes(string list) => Split(list).Select(m => m switch
    {
        "resume" => DelegationMode.Resume,
        "handoff" => DelegationMode.Handoff,
        "relay" => DelegationMode.Relay,
        "assist" => DelegationMode.Assist,
        _ => throw new FormatException($"'{m}' is not a mode: use resume, handoff, relay and assist (auto chooses among those allowed)"),
    }).ToHashSet();

    /// <summary>A spend limit in minor units per currency per day, or <c>none</c>.</summary>
    public static long? ParseSpendLimit(string text) =>
        text.Trim() == "none" ? null
        : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v
        : throw new FormatException($"'{text}' is not a spend limit: give an amount in minor units (e.g. 5000, 0 for none at all) or 'none' for no limit");

    /// <summary>A duration: <c>90s</c>, <c>10m</c>, <c>2h</c>, <c>7d</c> (plain numbers are seconds), or <c>market</c> for the market's own; at most 7 days.</summary>
    public static TimeSpan? ParseTicketLifetime(string text)
    {
        var t = text.Trim();
        if (t is "market" or "none") return null;
        var unit = t.Length > 0 && char.IsLetter(t[^1]) ? t[^1] : 's';
        var digits = char.IsLetter(unit) && t.Length > 0 && char.IsLetter(t[^1]) ? t[..^1] : t;
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n <= 0 || n > 7 * 24 * 3600)
            throw new FormatException($"'{text}' is not a ticket lifetime: give e.g. 90s, 10m, 2h or 7d (at most 7 days), or 'market' for the market's own");
        var lifetime = unit switch
        {
            's' => TimeSpan.FromSeconds(n),
            'm' => TimeSpan.FromMinutes(n),
            'h' => TimeSpan.FromHours(n),
            'd' => TimeSpan.FromDays(n),
            _ => throw new FormatException($"'{text}' is not a ticket lifetime: the unit is s, m, h or d"),
        };
        return lifetime > LongestTicketLifetime
            ? throw new FormatException($"'{text}' is longer than 7 days, the longest a TLS 1.3 ticket may live")
            : lifetime;
    }

    public static string FormatLifetime(TimeSpan? lifetime) => lifetime is { } l ? $"{(long)l.TotalSeconds}s" : "market";

    /// <summary>A list of names, <c>*</c> for all (null), or <c>none</c> (appliances and payees).</summary>
    public static IReadOnlyList<string>? ParseNames(string list)
    {
        if (list.Trim() == "*") return null;
        var names = Split(list);
        return names.Contains("*") ? throw new FormatException($"'{list}' mixes * with names: give * alone for all, or the names") : names;
    }

    /// <summary>Payee names as <see cref="ParseNames"/> reads them, each a payee's name (letters, digits, dots and dashes).</summary>
    public static IReadOnlyList<string>? ParsePayees(string list)
    {
        var names = ParseNames(list);
        return names?.FirstOrDefault(n => !Money.PayeeDirectory.IsName(n)) is { } bad
            ? throw new FormatException($"'{bad}' is not a payee's name: letters, digits, dots and dashes, as 'daiko home payee add --name' takes")
            : names;
    }
}
