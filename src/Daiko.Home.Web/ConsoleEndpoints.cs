using Daiko.Cards;
using Daiko.Home.Hosting;
using Daiko.Money;
using Daiko.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using QRCoder;

namespace Daiko.Home.Web;

/// <summary>What every console page works on.</summary>
internal sealed record ConsoleContext(HomeServer Server, HomeWebOptions Options, ConsoleSessions Sessions)
{
    public HomeConfig Config => Options.Config();

    /// <summary>
    /// HOST:PORT terminals use (home.json "advertise", else the control listener's address), and a sentence for the owner
    /// when it was guessed: see <see cref="EnrollmentAddress.Choose"/>.
    /// </summary>
    public (string Address, string? Note) Advertised(HttpContext http) =>
        Config.Advertise is { Length: > 0 } advertised ? (advertised, null)
            : EnrollmentAddress.Choose(Server.LocalEndPoint, http.Request.Host.Host, EnrollmentAddress.MachineAddresses);
}

/// <summary>
/// The console's routes. Every page needs an owner session (from a one-time link); every POST needs the
/// session's CSRF token; the card signs only after PIN2 is given on the page, counted like any try.
/// </summary>
internal static class ConsoleEndpoints
{
    private const string SessionItem = "daiko.session";

    public static void Map(WebApplication app, ConsoleContext c)
    {
        app.Use((context, next) => Guard(context, next, c));
        app.MapGet("/login/{token}", async Task<IResult> (HttpContext http, string token) => await Login(http, token, c));
        app.MapGet("/", () => Results.Redirect("/card"));
        app.MapGet("/card", async Task<IResult> (HttpContext http) => Page(http, "Home card", "/card", await ConsolePages.Card(c, Csrf(http))));
        app.MapGet("/devices", async Task<IResult> (HttpContext http) => Page(http, "Devices", "/devices", await ConsolePages.Devices(c, Csrf(http))));
        app.MapGet("/devices/revoke", async Task<IResult> (HttpContext http, string name) => Page(http, "Revoke a device", "/devices", await ConsolePages.ConfirmRevoke(c, Csrf(http), name)));
        app.MapGet("/sessions", async Task<IResult> (HttpContext http) => Page(http, "Sessions", "/sessions", await ConsolePages.Sessions(c)));
        app.MapGet("/wallet", async Task<IResult> (HttpContext http) => Page(http, "Wallet", "/wallet", ConsolePages.Wallet(c, Csrf(http), null)));
        app.MapGet("/audit", async Task<IResult> (HttpContext http) => Page(http, "Audit", "/audit", await ConsolePages.Audit(c, http.Request.Query)));
        app.MapGet("/appliances", async Task<IResult> (HttpContext http) => Page(http, "Appliances", "/appliances", await ConsolePages.Appliances(c)));
        app.MapGet("/pim", async Task<IResult> (HttpContext http) => Page(http, "Personal data", "/pim", await ConsolePages.Pim(c)));
        app.MapPost("/card/lock", async Task<IResult> (HttpContext http) =>
        {
            c.Server.Card.Lock();
            await c.Server.Devices.AuditAsync(null, "console-lock", null, null, "locked");
            return Results.Redirect("/card", preserveMethod: false);
        });
        app.MapPost("/devices/revoke", async Task<IResult> (HttpContext http) =>
        {
            var name = (await http.Request.ReadFormAsync())["name"].ToString();
            var revoked = await c.Server.Devices.RevokeAsync(name);
            return Page(http, "Devices", "/devices", (revoked ? $"<p class=\"ok\">Device '{Html.E(name)}' revoked: its channels close and its cached tickets are purged within a second.</p>" : $"<p class=\"err\">No enrolled, unrevoked device is named '{Html.E(name)}'.</p>") + await ConsolePages.Devices(c, Csrf(http)));
        });
        app.MapPost("/devices/enroll", async Task<IResult> (HttpContext http) => Page(http, "Enroll a device", "/devices", await Enroll(http, c, (await http.Request.ReadFormAsync())["name"].ToString())));
        app.MapPost("/wallet/cancel", async Task<IResult> (HttpContext http) =>
        {
            var form = await http.Request.ReadFormAsync();
            var message = await CancelAsync(c, form["payment"].ToString(), form["pin2"].ToString(), http.RequestAborted);
            return Page(http, "Wallet", "/wallet", ConsolePages.Wallet(c, Csrf(http), message));
        });
        app.MapPost("/logout", (HttpContext http) =>
        {
            c.Sessions.End(http);
            return Results.Content(Html.Bare("Logged out", "You are logged out of the Daiko console. Print a new link with 'daiko home console-link' to come back."), "text/html; charset=utf-8");
        });
    }

    /// <summary>Sessions for pages, CSRF tokens for forms; /healthz, /metrics and the login link stay open.</summary>
    private static async Task Guard(HttpContext context, Func<Task> next, ConsoleContext c)
    {
        var path = context.Request.Path.Value ?? "/";
        if (path is "/healthz" or "/metrics" || path.StartsWith("/login/", StringComparison.Ordinal))
        {
            await next();
            return;
        }
        var session = c.Sessions.Find(context);
        if (session is null)
        {
            await Refuse(context, StatusCodes.Status401Unauthorized, "Log in first", "Open the one-time link that 'daiko home console-link --home DIR' prints on the home server.");
            return;
        }
        context.Items[SessionItem] = session;
        if (HttpMethods.IsPost(context.Request.Method))
        {
            var posted = context.Request.HasFormContentType ? (await context.Request.ReadFormAsync())[ConsoleSessions.CsrfField].ToString() : null;
            if (!ConsoleSessions.CsrfMatches(session, posted))
            {
                await c.Server.Devices.AuditAsync(null, "console", null, null, "refused: CSRF token missing or wrong");
                await Refuse(context, StatusCodes.Status403Forbidden, "Refused", "This form did not come from your console page (its CSRF token is missing or wrong). Reload the page and try again.");
                return;
            }
        }
        await next();
    }

    private static async Task Refuse(HttpContext context, int status, string title, string message)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/html; charset=utf-8";
        await context.Response.WriteAsync(Html.Bare(title, message));
    }

    private static async Task<IResult> Login(HttpContext http, string token, ConsoleContext c)
    {
        if (!ConsoleLinks.Spend(c.Options.Directory, token, c.Options.Time))
        {
            var source = Devices.EnrollmentLimiter.AddressKey(http.Connection.RemoteIpAddress ?? System.Net.IPAddress.None);
            await c.Server.Devices.AuditStrangerRefusalAsync(source, "console-login", "refused: unknown, used or expired link");
            return Results.Content(Html.Bare("Link not valid", "This login link was already used or has expired. Print a new one with 'daiko home console-link --home DIR'."), "text/html; charset=utf-8", statusCode: 403);
        }
        c.Sessions.Start(http);
        await c.Server.Devices.AuditAsync(null, "console-login", null, null, "owner session started");
        return Results.Redirect("/card");
    }

    private static string Csrf(HttpContext http) => ((ConsoleSession)http.Items[SessionItem]!).Csrf;

    private static IResult Page(HttpContext http, string title, string active, string body) =>
        Results.Content(Html.Page(title, active, Csrf(http), body), "text/html; charset=utf-8");

    /// <summary>A one-time code for a new device, as text and as a QR code of its daiko-enroll URI; shown on this page only.</summary>
    private static async Task<string> Enroll(HttpContext http, ConsoleContext c, string name)
    {
        string secret;
        DateTimeOffset expires;
        try
        {
            (secret, expires) = await c.Server.Devices.AddEnrollmentCodeAsync(name.Trim());
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return $"<p class=\"err\">{Html.E(e.Message)}</p>" + await ConsolePages.Devices(c, Csrf(http));
        }
        var policy = await Daiko.Home.Policy.DevicePolicies.SetForNewDeviceAsync(c.Server.Policies.Store, name.Trim(), c.Config.DeviceDefaults.ToPolicy());
        await c.Server.Devices.AuditAsync(null, "console-enroll-code", null, null, "code issued");
        var code = EnrollmentCode.Compose(secret, c.Server.Identity.SpkiHash);
        var (home, note) = c.Advertised(http);
        var uri = EnrollmentUri.Format(home, code);
        using var data = QRCodeGenerator.GenerateQrCode(uri, QRCodeGenerator.ECCLevel.M);
        var png = new PngByteQRCode(data).GetGraphic(8);
        return $"""
            <section><p>Enroll <strong>{Html.E(name)}</strong> before {Html.Time(expires)} (single use). Scan the code, or run on the terminal:</p>
            <p><img class="qr" id="enroll-qr" alt="QR code of the enrollment URI" src="data:image/png;base64,{Convert.ToBase64String(png)}"></p>
            <p class="code" id="enroll-uri">{Html.E(uri)}</p><p class="muted">printf '%s\n' '{Html.E(uri)}' | daiko terminal enroll --terminal DIR --uri - (the access-card PIN on the next line)</p>
            <p>Code: <span class="code" id="enroll-code">{Html.E(code)}</span> (home {Html.E(home)})</p>{(note is null ? "" : $"<p class=\"muted\" id=\"enroll-note\">{Html.E(note)}</p>")}
            <p id="enroll-policy">Its policy: markets {Html.E(policy.MarketsText)}; modes {Html.E(policy.ModesText)}; {(policy.SpendLimitPerDay is { } limit ? $"spend limit {limit} a day" : "no spend limit")}; payees {Html.E(policy.PayeesText)}; up to {policy.MaxTickets} tickets per market (<code>daiko home device policy</code> changes it).</p>
            <p class="muted">This page is the only place the code is shown; leaving it keeps the code valid until it expires.</p></section>
            """;
    }

    /// <summary>Cancels a payment from the console: PIN2 first (a wrong one costs a try), then the card signs, the market confirms, the purse re-credits.</summary>
    private static async Task<string> CancelAsync(ConsoleContext c, string paymentId, string pin2, CancellationToken ct)
    {
        var card = c.Server.Card;
        // The console gives PIN2 only: a card that waits for PIN2 (a device unlocked it once) is made ready for this
        // cancellation alone, and waits again afterwards unless a device holds a session. (A device whose unlock runs at
        // that very moment, its PIN2 taken but its session not yet stored, may find the card waiting again: the same
        // race as two devices' lock and unlock, in the known limits.)
        var pin = card.EnterPin2(pin2);
        if (!pin.Accepted)
        {
            await c.Server.Devices.AuditAsync(null, "console-pin2", null, null, pin.Outcome == PinOutcome.Disabled ? "card disabled" : pin.Outcome == PinOutcome.WrongState ? "card locked" : "wrong PIN2");
            return $"<p class=\"err\">{Html.E(pin.Outcome == PinOutcome.WrongState && pin.State == HomeCardState.Locked ? CardLockedSentence : pin.Message)}</p>";
        }
        try
        {
            return await CancelInReadyCardAsync(c, paymentId, ct);
        }
        finally
        {
            if (!await c.Server.Authority.AnyHoldsSessionAsync(CancellationToken.None)) card.Done();
        }
    }

    /// <summary>Told when the console is asked to cancel while the card is locked (PIN1 not given since the server started or the card was locked).</summary>
    public const string CardLockedSentence =
        "the home card is locked (the server was restarted, or the card was locked): unlock it from a terminal with 'daiko terminal unlock' (PIN1 and PIN2), then cancel here with PIN2";

    private static async Task<string> CancelInReadyCardAsync(ConsoleContext c, string paymentId, CancellationToken ct)
    {
        var ledger = c.Server.Ledger;
        try
        {
            var cancellation = await ledger.CancelAsync(paymentId);
            var url = ledger.MarketUrlOf(paymentId) ?? throw new PurseException(PurseRefusal.Malformed, "the market of this payment gave no address for cancellations");
            var answer = await MarketPost.SendAsync(c.Server.Delegation, new Uri(new Uri(url), "cancellations"), cancellation, await c.Server.Policies.ReachOfAnyDeviceAsync(c.Server.Devices, ct), ct);
            if (!answer.Success) return $"<p class=\"err\">The market refused the cancellation ({answer.Status}): {Html.E(answer.Shown)}</p>";
            var balance = await ledger.ApplyConfirmationAsync(answer.Body);
            await c.Server.Devices.AuditAsync(null, "console-cancel", null, null, "cancelled");
            return $"<p class=\"ok\" id=\"cancelled\">Payment {Html.E(paymentId)} cancelled; the balance is now {balance}.</p>";
        }
        catch (Exception e) when (e is PurseException or CardNotReadyException or HttpRequestException or TaskCanceledException or UriFormatException or Delegation.DelegationException)
        {
            await c.Server.Devices.AuditAsync(null, "console-cancel", null, null, "failed");
            return $"<p class=\"err\">{Html.E(e.Message)}</p>";
        }
    }
}
