using System.Text.Json;
using Daiko.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.Playwright;

namespace Daiko.Web.Tests;

/// <summary>The owner's console in a real browser (Debian's chromium), against a real <c>daiko home serve</c>.</summary>
public sealed class ConsoleBrowserTests(ConsoleSystem system) : IClassFixture<ConsoleSystem>
{
    private static string Docs => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../docs"));

    [Fact]
    public async Task LoginByLink_StartsAnOwnerSession_WithAStrictCookie_AndTheLinkWorksOnce()
    {
        await using var context = await system.NewContextAsync();
        var page = await context.NewPageAsync();
        var link = await system.LinkAsync();

        await page.GotoAsync(link);

        Assert.EndsWith("/card", page.Url, StringComparison.Ordinal);
        Assert.Equal("crypto-ready", await page.Locator("#card-state").TextContentAsync());
        var cookie = Assert.Single(await context.CookiesAsync(), c => c.Name == "daiko_console");
        Assert.True(cookie.HttpOnly);
        Assert.Equal(SameSiteAttribute.Strict, cookie.SameSite);
        Assert.DoesNotContain(link.Split('/')[^1], await page.ContentAsync(), StringComparison.Ordinal);

        // The same link in another browser profile is refused: it was spent.
        await using var other = await system.NewContextAsync();
        var second = await other.NewPageAsync();
        var response = await second.GotoAsync(link);
        Assert.Equal(403, response!.Status);
        Assert.Contains("already used or has expired", await second.ContentAsync(), StringComparison.Ordinal);
        Assert.Empty(await other.CookiesAsync());

        // Logging out ends the session.
        await page.ClickAsync("header button[type=submit]");
        var after = await page.GotoAsync($"{system.ConsoleUrl}/card");
        Assert.Equal(401, after!.Status);
    }

    [Fact]
    public async Task WithoutALoginLink_EveryPageAndFormIsRefused()
    {
        await using var context = await system.NewContextAsync();
        var page = await context.NewPageAsync();

        foreach (var path in new[] { "/", "/card", "/devices", "/sessions", "/wallet", "/audit", "/appliances", "/pim", "/devices/revoke?name=phone" })
        {
            var response = await page.GotoAsync(system.ConsoleUrl + path);
            Assert.True(response!.Status == 401, $"{path} answered {response.Status}");
            Assert.Contains("Log in first", await page.ContentAsync(), StringComparison.Ordinal);
        }
        var made = await context.APIRequest.PostAsync($"{system.ConsoleUrl}/devices/revoke", new APIRequestContextOptions { Form = context.APIRequest.CreateFormData().Set("name", "phone") });
        Assert.Equal(401, made.Status);
        var forged = await page.GotoAsync($"{system.ConsoleUrl}/login/not-a-real-token");
        Assert.Equal(403, forged!.Status);
        Assert.False(await DeviceRevokedAsync("phone"));
    }

    [Fact]
    public async Task EnrollFromTheQrCode_ARealTerminalEnrollsWithTheDecodedUri()
    {
        await using var context = await system.NewContextAsync();
        var page = await system.LoggedInPageAsync(context);
        await page.GotoAsync($"{system.ConsoleUrl}/devices");
        await page.FillAsync("#enroll-name", "tablet");
        await page.ClickAsync("#enroll");

        var qr = await ConsoleSystem.DecodeQrAsync(page.Locator("#enroll-qr"));

        Assert.Equal((await page.Locator("#enroll-uri").TextContentAsync())!.Trim(), qr);
        Assert.Matches($"^daiko-enroll://127\\.0\\.0\\.1:{system.Port}/[0-9A-Z]{{4}}(-[0-9A-Z]{{4}}){{6}}$", qr);
        var terminal = Path.Combine(system.Dir.Path, "tablet");
        var enrolled = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", terminal, "--uri", qr], HomeWithConsole.AccessPin + "\n");
        Assert.True(enrolled.ExitCode == 0, enrolled.ToString());
        Assert.Contains("enrolled as 'tablet'", enrolled.StandardOutput, StringComparison.Ordinal);
        // The code is spent: the devices page lists the tablet and shows no code any more.
        await page.GotoAsync($"{system.ConsoleUrl}/devices");
        Assert.Contains("tablet", await page.Locator("table").TextContentAsync(), StringComparison.Ordinal);
        Assert.Equal(0, await page.Locator("#enroll-code").CountAsync());
        var again = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", terminal + "-again", "--uri", qr], HomeWithConsole.AccessPin + "\n");
        Assert.NotEqual(0, again.ExitCode);
    }

    [Fact]
    public async Task Revoke_AsksForConfirmation_ThenTheDeviceIsRefused()
    {
        var code = (await HomeWithConsole.Ok(["home", "device", "add", "--home", system.Home, "--name", "watch"])).StandardOutput.Trim();
        var watch = Path.Combine(system.Dir.Path, "watch");
        await HomeWithConsole.Ok(["terminal", "enroll", "--terminal", watch, "--home", $"127.0.0.1:{system.Port}", "--code", code], HomeWithConsole.AccessPin + "\n");
        await using var context = await system.NewContextAsync();
        var page = await system.LoggedInPageAsync(context);
        await page.GotoAsync($"{system.ConsoleUrl}/devices");

        await page.ClickAsync("#revoke-watch");
        Assert.False(await DeviceRevokedAsync("watch"), "following the revoke link alone must not revoke");
        await page.ClickAsync("#confirm-revoke");

        Assert.Contains("Device 'watch' revoked", await page.ContentAsync(), StringComparison.Ordinal);
        Assert.True(await DeviceRevokedAsync("watch"));
        var refused = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", watch], $"{HomeWithConsole.AccessPin}\n{HomeWithConsole.Pin1}\n{HomeWithConsole.Pin2}\n");
        Assert.NotEqual(0, refused.ExitCode);
    }

    [Fact]
    public async Task AFormWithoutTheSessionsCsrfToken_IsRefused_EvenWithTheSessionCookie()
    {
        await using var context = await system.NewContextAsync();
        var page = await system.LoggedInPageAsync(context);

        // The request API shares the logged-in profile's cookies: only the token is missing or wrong.
        var missing = await context.APIRequest.PostAsync($"{system.ConsoleUrl}/devices/revoke", new APIRequestContextOptions { Form = context.APIRequest.CreateFormData().Set("name", "phone") });
        var wrong = await context.APIRequest.PostAsync($"{system.ConsoleUrl}/devices/revoke", new APIRequestContextOptions { Form = context.APIRequest.CreateFormData().Set("name", "phone").Set("csrf", "guessed") });
        var locked = await context.APIRequest.PostAsync($"{system.ConsoleUrl}/card/lock", new APIRequestContextOptions { Form = context.APIRequest.CreateFormData().Set("csrf", "") });

        Assert.Equal(403, missing.Status);
        Assert.Equal(403, wrong.Status);
        Assert.Equal(403, locked.Status);
        Assert.False(await DeviceRevokedAsync("phone"));
        await page.ReloadAsync();
        Assert.Equal("crypto-ready", await page.Locator("#card-state").TextContentAsync());
    }

    [Fact]
    public async Task OnAPhone_ThePagesFitTheScreen_AndScreenshotsAreTaken()
    {
        await using var phone = await system.NewContextAsync(390, 844, mobile: true);
        var page = await system.LoggedInPageAsync(phone);
        foreach (var path in new[] { "/card", "/devices", "/wallet", "/audit", "/sessions" })
        {
            await page.GotoAsync(system.ConsoleUrl + path);
            var overflow = await page.EvaluateAsync<int>("document.documentElement.scrollWidth - document.documentElement.clientWidth");
            Assert.True(overflow <= 0, $"{path} is {overflow} px wider than a phone's screen");
        }
        await page.GotoAsync($"{system.ConsoleUrl}/devices");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(Docs, "console-phone.png"), FullPage = true });

        await using var desktop = await system.NewContextAsync();
        var wide = await system.LoggedInPageAsync(desktop);
        await wide.GotoAsync($"{system.ConsoleUrl}/devices");
        await wide.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(Docs, "console-desktop.png") });
        // On the desktop, table headings are shown; on the phone, each cell is labelled instead.
        Assert.True(await wide.Locator("thead").First.IsVisibleAsync());
        Assert.False(await page.Locator("thead").First.IsVisibleAsync());
    }

    [Fact]
    public async Task CancelAPayment_AsksForPin2_AWrongOneCostsATry_AndTheRightOneReCredits()
    {
        var bankService = new Daiko.Samples.Money.SampleBank("bank.test");
        var shop = new Daiko.Samples.Money.SampleMarketMoney("market.test", bankService);
        await using var market = await Daiko.Samples.Market.SampleMarket.StartAsync(system.Pki.Server.Certificate, system.Pki.Root, System.Net.IPAddress.Loopback, routes: shop.Map);
        shop.PublicUrl = market.Url;
        await using var bank = await Daiko.Samples.Market.SampleMarket.StartAsync(system.Pki.Server.Certificate, system.Pki.Root, System.Net.IPAddress.Loopback, routes: bankService.Map);
        await Daiko.Home.Hosting.HomeServer.AddPayeeAsync(system.Home, shop.Id, Daiko.Home.Storage.PayeeRole.Market, shop.Key);
        await Daiko.Home.Hosting.HomeServer.AddPayeeAsync(system.Home, bankService.Id, Daiko.Home.Storage.PayeeRole.Bank, bankService.Key);
        // Other tests of this class may have paid from the same purse: what this one moves is counted from here.
        var start = await BalanceOrZeroAsync();
        await HomeWithConsole.Ok(["terminal", "wallet", "refill", "--terminal", system.Terminal, "--bank", bank.Url.ToString(), "--amount", "10000"]);
        var paid = await HomeWithConsole.Ok(["terminal", "wallet", "pay", "--terminal", system.Terminal, "--market", market.Url.ToString(), "--order", "tea-set", "--json"]);
        var paymentId = JsonDocument.Parse(paid.StandardOutput).RootElement.GetProperty("payment_id").GetString()!;
        var before = await BalanceAsync();
        Assert.True(before < start + 10000);

        await using var context = await system.NewContextAsync();
        var page = await system.LoggedInPageAsync(context);
        await page.GotoAsync($"{system.ConsoleUrl}/wallet");
        var form = page.Locator($"form.cancel:has(input[name=payment][value='{paymentId}'])");
        await form.Locator("input[name=pin2]").FillAsync("9999");
        await form.Locator("button").ClickAsync();

        Assert.Contains("wrong", (await page.Locator("p.err").TextContentAsync())!, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(before, await BalanceAsync());
        await page.GotoAsync($"{system.ConsoleUrl}/card");
        Assert.Equal("2", await page.Locator("#pin2-tries").TextContentAsync());

        await page.GotoAsync($"{system.ConsoleUrl}/wallet");
        form = page.Locator($"form.cancel:has(input[name=payment][value='{paymentId}'])");
        await form.Locator("input[name=pin2]").FillAsync(HomeWithConsole.Pin2);
        await form.Locator("button").ClickAsync();

        Assert.Contains($"Payment {paymentId} cancelled", await page.Locator("#cancelled").TextContentAsync(), StringComparison.Ordinal);
        Assert.Equal(start + 10000, await BalanceAsync());
        Assert.Equal(0, await page.Locator($"form.cancel:has(input[name=payment][value='{paymentId}'])").CountAsync());
        Assert.DoesNotContain(HomeWithConsole.Pin2, await page.ContentAsync(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("megabytes", "longer than 64 KiB")]
    [InlineData("cut", "the market's answer broke off")]
    public async Task AMarketAnsweringACancellationWithMegabytes_OrCuttingItsAnswer_IsReadNoFurtherThan64KiB_AndTheOwnerSeesAShortError(string how, string error)
    {
        var bankService = new Daiko.Samples.Money.SampleBank("bank.test");
        var shop = new Daiko.Samples.Money.SampleMarketMoney("market.test", bankService);
        await using var market = await Daiko.Samples.Market.SampleMarket.StartAsync(system.Pki.Server.Certificate, system.Pki.Root, System.Net.IPAddress.Loopback, routes: shop.Map);
        // The payee names, in what it signs, an address for cancellations that answers a refusal 8 MiB long, sent in chunks,
        // or one that announces 1,000 bytes and cuts the connection after 100.
        await using var hostile = await Daiko.Samples.Market.SampleMarket.StartAsync(system.Pki.Server.Certificate, system.Pki.Root, System.Net.IPAddress.Loopback, routes: app =>
            app.MapPost("/cancellations", async (Microsoft.AspNetCore.Http.HttpContext http) =>
            {
                http.Response.StatusCode = 500;
                if (how == "cut")
                {
                    http.Response.ContentLength = 1000;
                    await http.Response.Body.WriteAsync(new byte[100]);
                    await http.Response.Body.FlushAsync();
                    http.Abort();
                    return;
                }
                var chunk = System.Text.Encoding.ASCII.GetBytes(new string('A', 64 * 1024));
                try
                {
                    for (var i = 0; i < 128 && !http.RequestAborted.IsCancellationRequested; i++) await http.Response.Body.WriteAsync(chunk, http.RequestAborted);
                }
                catch (Exception e) when (e is OperationCanceledException or IOException)
                {
                    // The home server stopped reading and closed.
                }
            }));
        shop.PublicUrl = hostile.Url;
        await using var bank = await Daiko.Samples.Market.SampleMarket.StartAsync(system.Pki.Server.Certificate, system.Pki.Root, System.Net.IPAddress.Loopback, routes: bankService.Map);
        await Daiko.Home.Hosting.HomeServer.AddPayeeAsync(system.Home, shop.Id, Daiko.Home.Storage.PayeeRole.Market, shop.Key);
        await Daiko.Home.Hosting.HomeServer.AddPayeeAsync(system.Home, bankService.Id, Daiko.Home.Storage.PayeeRole.Bank, bankService.Key);
        await HomeWithConsole.Ok(["terminal", "wallet", "refill", "--terminal", system.Terminal, "--bank", bank.Url.ToString(), "--amount", "5000"]);
        var paid = await HomeWithConsole.Ok(["terminal", "wallet", "pay", "--terminal", system.Terminal, "--market", market.Url.ToString(), "--order", "kettle-" + how, "--json"]);
        var paymentId = JsonDocument.Parse(paid.StandardOutput).RootElement.GetProperty("payment_id").GetString()!;
        var before = await BalanceAsync();

        await using var context = await system.NewContextAsync();
        var page = await system.LoggedInPageAsync(context);
        await page.GotoAsync($"{system.ConsoleUrl}/wallet");
        var form = page.Locator($"form.cancel:has(input[name=payment][value='{paymentId}'])");
        await form.Locator("input[name=pin2]").FillAsync(HomeWithConsole.Pin2);
        await form.Locator("button").ClickAsync();

        var shown = (await page.Locator("p.err").TextContentAsync())!;
        Assert.Contains(error, shown, StringComparison.Ordinal);
        Assert.True((await page.ContentAsync()).Length < 64 * 1024, "the market's answer reached the owner's page");
        Assert.Equal(before, await BalanceAsync());
    }

    private async Task<long> BalanceOrZeroAsync()
    {
        var balance = await HomeWithConsole.Ok(["terminal", "wallet", "balance", "--terminal", system.Terminal, "--json"]);
        return JsonDocument.Parse(balance.StandardOutput).RootElement.GetProperty("balances").TryGetProperty("JPY", out var jpy) ? jpy.GetInt64() : 0;
    }

    private async Task<long> BalanceAsync()
    {
        var balance = await HomeWithConsole.Ok(["terminal", "wallet", "balance", "--terminal", system.Terminal, "--json"]);
        return JsonDocument.Parse(balance.StandardOutput).RootElement.GetProperty("balances").GetProperty("JPY").GetInt64();
    }

    private async Task<bool> DeviceRevokedAsync(string name)
    {
        var list = await HomeWithConsole.Ok(["home", "device", "list", "--home", system.Home, "--json"]);
        return JsonDocument.Parse(list.StandardOutput).RootElement.GetProperty("devices").EnumerateArray()
            .Any(d => d.GetProperty("name").GetString() == name && d.GetProperty("revoked").GetBoolean());
    }
}
