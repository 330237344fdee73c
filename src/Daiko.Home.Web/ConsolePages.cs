using System.Globalization;
using Daiko.Home.Pim;
using Microsoft.AspNetCore.Http;

namespace Daiko.Home.Web;

/// <summary>The console's pages, rendered on the server from the home server's own state. Nothing secret is rendered.</summary>
internal static class ConsolePages
{
    public const int AuditPageSize = 50;

    public static Task<string> Card(ConsoleContext c, string csrf)
    {
        var status = c.Server.Card.GetStatus();
        var state = Handlers.CardGate.StateName(status.State);
        return Task.FromResult($"""
            <section><p>State <span class="state" id="card-state">{Html.E(state)}</span></p>
            <p>PIN1 tries left <strong id="pin1-tries">{status.Pin1TriesLeft}</strong> · PIN2 tries left <strong id="pin2-tries">{status.Pin2TriesLeft}</strong></p>
            <p class="muted">Card {Html.E(c.Server.Card.CardId[..16])}…</p>
            {Html.Form("/card/lock", csrf, "<button type=\"submit\" class=\"danger\" id=\"lock-now\">Lock now</button>")}
            <p class="muted">Locking closes the card: every terminal must give PIN1 and PIN2 again.</p></section>
            """);
    }

    public static async Task<string> Devices(ConsoleContext c, string csrf)
    {
        var channels = c.Server.Connections.CountsByDevice();
        var devices = await c.Server.Devices.ListAsync();
        // Each device's last request as the server notes it (to half a minute), not looked for among recent audit lines:
        // a busy device would push the others' out of those.
        var lastUse = new Dictionary<string, DateTimeOffset?>();
        foreach (var d in devices) lastUse[d.Id] = await c.Server.Policies.Store.LastUseAsync(d.Name);
        var rows = devices.Select(d => new[]
        {
            Html.E(d.Name),
            d.Revoked ? $"revoked {Html.Time(d.RevokedAt)}" : channels.TryGetValue(d.Id, out var n) ? $"connected ({n})" : "enrolled",
            Html.Time(d.EnrolledAt),
            Html.Time(lastUse[d.Id]),
            d.Revoked ? "" : $"<a href=\"/devices/revoke?name={Uri.EscapeDataString(d.Name)}\" id=\"revoke-{Html.E(d.Name)}\">revoke…</a>",
        });
        return "<section>" + Html.Table(["name", "state", "enrolled", "last use", ""], rows, "No device is enrolled yet.") + "</section>"
            + "<section><h2>Enroll a new device</h2>"
            + Html.Form("/devices/enroll", csrf, "<label>Name <input name=\"name\" id=\"enroll-name\" required maxlength=\"64\"></label> <button type=\"submit\" id=\"enroll\">Make a code</button>")
            + "<p class=\"muted\">The code is valid for 10 minutes, once, and is shown only on the next page.</p></section>";
    }

    public static async Task<string> ConfirmRevoke(ConsoleContext c, string csrf, string name)
    {
        var device = await c.Server.Devices.FindAsync(name);
        if (device is null || device.Revoked) return $"<p class=\"err\">No enrolled, unrevoked device is named '{Html.E(name)}'.</p>";
        return $"<section><p>Revoke <strong>{Html.E(name)}</strong>? It is refused from now on, its open channels close and its cached tickets are purged. It can only come back by enrolling again.</p>"
            + Html.Form("/devices/revoke", csrf, Html.Hidden("name", name) + "<button type=\"submit\" class=\"danger\" id=\"confirm-revoke\">Revoke</button> <a href=\"/devices\">Keep it</a>") + "</section>";
    }

    public static async Task<string> Sessions(ConsoleContext c)
    {
        var names = (await c.Server.Devices.ListAsync()).ToDictionary(d => d.Id, d => d.Name);
        var channels = c.Server.Connections.CountsByDevice().Select(kv => new[] { Html.E(names.GetValueOrDefault(kv.Key, kv.Key.Length == 0 ? "(enrolling)" : kv.Key)), kv.Value.ToString(CultureInfo.InvariantCulture) });
        var tickets = c.Server.Delegation.Tickets.CountsByMarket().Select(m => new[] { Html.E(m.Market), m.Entries.ToString(CultureInfo.InvariantCulture) });
        return "<section><h2>Open control channels</h2><p class=\"muted\">Relays and handoffs run inside these channels; closing a device's channel (revoke) ends them.</p>"
            + Html.Table(["device", "channels"], channels, "No terminal is connected.") + "</section>"
            + "<section><h2>Cached session tickets</h2>" + Html.Table(["market", "tickets"], tickets, "No ticket is cached.") + "</section>";
    }

    public static string Wallet(ConsoleContext c, string csrf, string? message)
    {
        var ledger = c.Server.Ledger;
        var balances = ledger.Currencies().Select(cur => new[] { Html.E(cur), ledger.Balance(cur).ToString(CultureInfo.InvariantCulture) });
        var history = ledger.History();
        var cancelled = history.Where(e => e.Kind == "cancellation").Select(e => e.Reference).ToHashSet();
        var now = c.Options.Time.GetUtcNow();
        var rows = history.OrderByDescending(e => e.Sequence).Take(200).Select(e => new[]
        {
            e.Sequence.ToString(CultureInfo.InvariantCulture), Html.Time(e.At), Html.E(e.Kind), Html.E(e.Reference),
            e.Amount.ToString(CultureInfo.InvariantCulture) + " " + Html.E(e.Currency), e.BalanceAfter.ToString(CultureInfo.InvariantCulture),
            e.Kind == "payment" && !cancelled.Contains(e.Reference) && now - e.At < TimeSpan.FromDays(7)
                ? Html.Form("/wallet/cancel", csrf, Html.Hidden("payment", e.Reference)
                    + "<input type=\"password\" name=\"pin2\" autocomplete=\"one-time-code\" placeholder=\"PIN2\" required size=\"6\"> <button type=\"submit\">Cancel</button>", "inline cancel")
                : "",
        });
        return (message ?? "") + "<section><h2>Balance</h2>" + Html.Table(["currency", "balance"], balances, "The purse is empty.") + "</section>"
            + "<section><h2>Payment log</h2><p class=\"muted\">A payment can be cancelled within 7 days; the card signs the cancellation only after PIN2, and a wrong PIN2 costs a try.</p>"
            + Html.Table(["#", "time", "kind", "reference", "amount", "balance", ""], rows, "No payment yet.") + "</section>";
    }

    public static async Task<string> Audit(ConsoleContext c, IQueryCollection query)
    {
        string Q(string key) => query[key].ToString().Trim();
        var names = (await c.Server.Devices.ListAsync()).ToDictionary(d => d.Id, d => d.Name);
        var device = Q("device");
        var market = Q("market");
        var outcome = Q("outcome");
        var page = int.TryParse(Q("page"), NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is > 0 and < 10_000 ? p : 1;
        // The whole log is searched in the store (a device cannot push its older lines out of the search with new ones):
        // a device by its name (a revoked one's too, while its row is kept) or by its id as the log shows it.
        var ids = device.Length == 0 ? null
            : names.Where(n => string.Equals(n.Value, device, StringComparison.OrdinalIgnoreCase)).Select(n => n.Key).Append(device).ToList();
        var (matching, total) = await c.Server.Devices.SearchAuditAsync(new Daiko.Home.Storage.AuditFilter(ids, market, outcome), (page - 1) * AuditPageSize, AuditPageSize);
        var rows = matching.Select(a => new[]
        {
            Html.Time(a.At), Html.E(a.Device is null ? "(owner/none)" : names.GetValueOrDefault(a.Device, a.Device)), Html.E(a.Action + (a.Mode is null ? "" : $" ({a.Mode})")), Html.E(a.Market), Html.E(a.Outcome),
        });
        var filter = $"""
            <form method="get" action="/audit"><label>Device <input name="device" value="{Html.E(device)}" size="10"></label>
            <label>Market <input name="market" value="{Html.E(market)}" size="14"></label> <label>Outcome <input name="outcome" value="{Html.E(outcome)}" size="10"></label>
            <button type="submit">Filter</button></form>
            """;
        string Link(int to, string label) => $"<a href=\"/audit?device={Uri.EscapeDataString(device)}&market={Uri.EscapeDataString(market)}&outcome={Uri.EscapeDataString(outcome)}&page={to}\" rel=\"{label}\">{label}</a>";
        var pages = Math.Max(1, (int)Math.Min(int.MaxValue, (total + AuditPageSize - 1) / AuditPageSize));
        var nav = $"<p>Page {page} of {pages} ({total} entries) {(page > 1 ? Link(page - 1, "prev") : "")} {(page < pages ? Link(page + 1, "next") : "")}</p>";
        return $"<section>{filter}</section><section>{Html.Table(["time", "device", "action", "market", "outcome"], rows, "No audit entry matches.")}{nav}</section>";
    }

    public static async Task<string> Appliances(ConsoleContext c)
    {
        var rows = new List<string[]>();
        foreach (var a in await c.Server.Appliances.ListAsync())
        {
            var last = (await c.Server.Appliances.ReadingsAsync(a.Name, 1)).FirstOrDefault();
            rows.Add([Html.E(a.Name), Html.E(a.Endpoint.GetLeftPart(UriPartial.Authority)), last is null ? "—" : $"{Html.E(last.State.Length > 80 ? last.State[..80] + "…" : last.State)} <span class=\"muted\">{Html.Time(last.At)}</span>"]);
        }
        return "<section>" + Html.Table(["appliance", "address", "last reading"], rows, "No appliance is registered ('daiko home appliance add').") + "</section>";
    }

    public static async Task<string> Pim(ConsoleContext c)
    {
        var store = new PimStore(c.Server.Store, c.Options.Time);
        var rows = new List<string[]>();
        foreach (var k in Enum.GetValues<PimKind>()) rows.Add([Html.E(k.ToString().ToLowerInvariant() + "s"), (await store.ListAsync(k)).Count.ToString(CultureInfo.InvariantCulture)]);
        return "<section><p class=\"muted\">Counts only: the items themselves stay with the terminals that sync them.</p>" + Html.Table(["kind", "items"], rows, "") + "</section>";
    }

}
