using Daiko.Protocol;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;

namespace Daiko.Cli.Commands;

/// <summary>The <c>terminal get --stats</c> line: the CLI's own counts plus the agent's share on its control channel.</summary>
internal static class TerminalStats
{
    public static async Task<string> LineAsync(ControlConnection control, DelegatedSession session, TimeSpan elapsed, CancellationToken ct)
    {
        // The agent's share: its control channel's bytes on the wire, round trips and public-key operations for this command.
        var cost = await new HomeControl(control).AgentCostAsync(ct);
        var extra = new Dictionary<string, object?>
        {
            ["mode"] = session.Mode.ToString().ToLowerInvariant(),
            ["control_bytes"] = cost.BytesSent + cost.BytesReceived,
            ["control_round_trips"] = cost.RoundTrips,
            ["control_public_key_ops"] = cost.PublicKeyOperations,
            ["public_key_ops"] = session.Counters.PublicKeyOperations + cost.PublicKeyOperations,
        };
        return session.Tls is { } tls
            ? TlsCommands.StatsLine(tls, session.Counters, elapsed, extra)
            : System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["resumed"] = false, ["kex"] = "none", ["suite"] = "none", ["group"] = "none",
                ["bytes_sent"] = session.Counters.BytesSent, ["bytes_received"] = session.Counters.BytesReceived,
                ["round_trips"] = session.Counters.RoundTrips,
                ["early_data_accepted"] = false, ["elapsed_ms"] = Math.Round(elapsed.TotalMilliseconds, 1),
            }.Concat(extra).ToDictionary());
    }
}
