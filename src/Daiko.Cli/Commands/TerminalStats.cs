using System.CommandLine;
using System.Text.Json;
using Daiko.Protocol;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Daiko.Tls;

namespace Daiko.Cli.Commands;

/// <summary>
/// The terminal commands' <c>--stats</c> line: the CLI's own counts (its market sessions) plus the
/// agent's share on its control channel, so that the line is the terminal's whole cost for the command.
/// </summary>
internal static class TerminalStats
{
    public static Option<bool> Option() => new("--stats") { Description = "print one JSON line of the terminal's whole cost for the command to stderr (market and control channel, CLI and agent)" };

    /// <summary><c>terminal get</c>: one session, described as <c>tls get --stats</c> describes it.</summary>
    public static async Task<string> LineAsync(ControlConnection control, DelegatedSession session, TimeSpan elapsed, CancellationToken ct)
    {
        var extra = await AgentShareAsync(control, session.Counters, ct);
        extra["mode"] = session.Mode.ToString().ToLowerInvariant();
        return session.Tls is { } tls
            ? TlsCommands.StatsLine(tls, session.Counters, elapsed, extra)
            : JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["resumed"] = false, ["kex"] = "none", ["suite"] = "none", ["group"] = "none",
                ["bytes_sent"] = session.Counters.BytesSent, ["bytes_received"] = session.Counters.BytesReceived,
                ["round_trips"] = session.Counters.RoundTrips,
                ["early_data_accepted"] = false, ["elapsed_ms"] = Math.Round(elapsed.TotalMilliseconds, 1),
            }.Concat(extra).ToDictionary());
    }

    /// <summary>
    /// Any other terminal command (wallet, appliance, prefetch, unlock, lock, a forwarded connection):
    /// the market sessions it opened (none for some), summed, and the agent's share.
    /// </summary>
    public static async Task<string> CommandLineAsync(ControlConnection control, IReadOnlyCollection<DelegatedSession> sessions, TimeSpan elapsed, CancellationToken ct)
    {
        var market = new TlsCounters();
        foreach (var s in sessions) market.Add(s.Counters);
        var cost = await new HomeControl(control).AgentCostAsync(ct);
        return CommandLine(sessions, market, elapsed, cost.BytesSent + cost.BytesReceived, cost.RoundTrips, cost.PublicKeyOperations);
    }

    /// <summary>
    /// A command without the agent: enroll (its control channel runs in the CLI itself, counted by
    /// <paramref name="control"/>), pin change and lock without an agent (nothing on any wire).
    /// </summary>
    public static string CommandLine(TlsCounters control, TimeSpan elapsed) =>
        CommandLine([], new TlsCounters(), elapsed, control.BytesSent + control.BytesReceived, control.RoundTrips, control.PublicKeyOperations);

    private static string CommandLine(IReadOnlyCollection<DelegatedSession> sessions, TlsCounters market, TimeSpan elapsed, long controlBytes, long controlRoundTrips, long controlPublicKeyOps)
    {
        var line = new Dictionary<string, object?>
        {
            ["sessions"] = sessions.Count,
            ["modes"] = sessions.Select(s => s.Mode.ToString().ToLowerInvariant()).Distinct().ToList(),
            ["bytes_sent"] = market.BytesSent,
            ["bytes_received"] = market.BytesReceived,
            ["round_trips"] = market.RoundTrips,
            ["elapsed_ms"] = Math.Round(elapsed.TotalMilliseconds, 1),
        };
        foreach (var (k, v) in Share(market, controlBytes, controlRoundTrips, controlPublicKeyOps)) line[k] = v;
        return JsonSerializer.Serialize(line);
    }

    /// <summary>The agent's share (its control channel's bytes on the wire, round trips and public-key operations for this client), and the total of public-key operations.</summary>
    private static async Task<Dictionary<string, object?>> AgentShareAsync(ControlConnection control, TlsCounters own, CancellationToken ct)
    {
        var cost = await new HomeControl(control).AgentCostAsync(ct);
        return Share(own, cost.BytesSent + cost.BytesReceived, cost.RoundTrips, cost.PublicKeyOperations);
    }

    private static Dictionary<string, object?> Share(TlsCounters own, long controlBytes, long controlRoundTrips, long controlPublicKeyOps) => new()
    {
        ["control_bytes"] = controlBytes,
        ["control_round_trips"] = controlRoundTrips,
        ["control_public_key_ops"] = controlPublicKeyOps,
        ["public_key_ops"] = own.PublicKeyOperations + controlPublicKeyOps,
    };
}
