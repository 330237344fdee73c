using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Daiko.Money;
using Daiko.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// Money roles against a real <c>daiko home serve</c> process, a terminal driven through the CLI, and
/// markets and banks on Kestrel: a refill counts only from a declared bank, money ids belong to the
/// party that issued them, and wallet errors say what the market or bank answered.
/// </summary>
public sealed class MoneyRolesProcessesTests : IAsyncLifetime
{
    private readonly HomeAndTerminal _system = new();
    private readonly List<IDisposable> _peers = new();

    public Task InitializeAsync() => _system.InitializeAsync();

    public async Task DisposeAsync()
    {
        foreach (var peer in _peers) peer.Dispose();
        await _system.DisposeAsync();
    }

    [Fact]
    public async Task WithoutABank_TheServerSaysSo_AndABankDeclaredWhileItRuns_IsHonouredWithinASecond()
    {
        await _system.Server.WaitForOutputAsync("no bank is declared", TimeSpan.FromSeconds(5));
        var bank = new MoneyPeer("bank.e2e", _system.Dir.Path);
        var bankUrl = await StartAsync(bank.MapBank);

        var before = await RefillAsync(bankUrl, 5_000);
        Assert.True(before.ExitCode == 1, before.ToString());
        Assert.Contains("'bank.e2e' is not declared as a bank", before.StandardError, StringComparison.Ordinal);

        await HomeAndTerminal.Ok(["home", "payee", "add", "--home", _system.Home, "--name", bank.Name, "--role", "bank", "--key", bank.KeyPath]);
        // Applied by the running server (no restart) at its next look, every quarter second (and the log line's own trip to
        // stderr); a server that needed a restart would never say it.
        await _system.Server.WaitForOutputAsync("bank declared: refills signed by bank.e2e are accepted", TimeSpan.FromSeconds(5));
        var after = await RefillAsync(bankUrl, 5_000);

        Assert.True(after.ExitCode == 0, after.ToString());
        Assert.Equal(5_000, await BalanceAsync());
    }

    [Fact]
    public async Task RefillWithStats_CountsTheBanksSessions_AndTheAgentsShare()
    {
        var bank = new MoneyPeer("bank.e2e", _system.Dir.Path);
        await HomeAndTerminal.Ok(["home", "payee", "add", "--home", _system.Home, "--name", bank.Name, "--role", "bank", "--key", bank.KeyPath]);
        await _system.Server.WaitForOutputAsync("bank declared", TimeSpan.FromSeconds(5));
        var bankUrl = await StartAsync(bank.MapBank);

        var result = await DaikoCli.RunAsync(["terminal", "wallet", "refill", "--terminal", _system.Terminal, "--bank", bankUrl.ToString(), "--amount", "5000", "--stats"], timeout: TimeSpan.FromSeconds(90));

        Assert.True(result.ExitCode == 0, result.ToString());
        var stats = JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
        // The bank's answer came over at least one delegated session; balance, delegate and refill went over the channel.
        Assert.True(stats.GetProperty("sessions").GetInt32() >= 1, stats.ToString());
        Assert.True(stats.GetProperty("bytes_received").GetInt64() > 0, stats.ToString());
        Assert.True(stats.GetProperty("control_round_trips").GetInt64() >= 3, stats.ToString());
        Assert.True(stats.GetProperty("public_key_ops").GetInt64() >= stats.GetProperty("control_public_key_ops").GetInt64(), stats.ToString());
        Assert.Equal(5_000, await BalanceAsync());
    }

    [Fact]
    public async Task ARefillSignedByAMarket_IsRefused_AndAMarketKeyInPayeesStillPays()
    {
        // An older home: the market's key sits in DIR/payees/ and counts as a market, never a bank.
        var shop = new MoneyPeer("shop.e2e", _system.Dir.Path);
        Directory.CreateDirectory(Path.Combine(_system.Home, "payees"));
        File.Copy(shop.KeyPath, Path.Combine(_system.Home, "payees", "shop.e2e.pem"));
        var rogueBank = await StartAsync(shop.MapBank);

        var refused = await RefillAsync(rogueBank, 1_000_000);

        Assert.True(refused.ExitCode == 1, refused.ToString());
        Assert.Contains("'shop.e2e' is not declared as a bank", refused.StandardError, StringComparison.Ordinal);
        await _system.Server.WaitForOutputAsync("wallet-refill refused (purse-badsignature)", TimeSpan.FromSeconds(5));
        Assert.Equal(0, await BalanceAsync());

        var bank = new MoneyPeer("bank.e2e", _system.Dir.Path);
        await HomeAndTerminal.Ok(["home", "payee", "add", "--home", _system.Home, "--name", bank.Name, "--role", "bank", "--key", bank.KeyPath]);
        await Task.Delay(TimeSpan.FromSeconds(1));
        var refilled = await RefillAsync(await StartAsync(bank.MapBank), 5_000);
        Assert.True(refilled.ExitCode == 0, refilled.ToString());
        var paid = await PayAsync(await StartAsync(shop.MapMarket), "tea");
        Assert.True(paid.ExitCode == 0, paid.ToString());
        Assert.Equal(5_000 - shop.Amount, await BalanceAsync());
    }

    [Fact]
    public async Task MoneyIdsBelongToTheirMoneyPeer_AnIdenticalRepeatGetsItsAnswer_AndAnotherMessageUnderTheSameIdIsAConflict()
    {
        var (bank, shopA, shopB) = await BankAndTwoShopsAsync();
        await Task.Delay(TimeSpan.FromSeconds(1));
        var refilled = await RefillAsync(await StartAsync(bank.MapBank), 10_000);
        Assert.True(refilled.ExitCode == 0, refilled.ToString());
        var (a, b) = (await StartAsync(shopA.MapMarket), await StartAsync(shopB.MapMarket));

        // Both markets use request id "order-1" (each signs its own request).
        var first = PaymentId(await PayAsync(a, "order-1"));
        var other = PaymentId(await PayAsync(b, "order-1"));

        Assert.NotEqual(first, other);
        Assert.Equal([other], shopB.Received);
        Assert.Equal(10_000 - 1_200 - 700, await BalanceAsync());

        // The same market asks again for the same request (signed afresh): the first payment, no second debit.
        Assert.Equal(first, PaymentId(await PayAsync(a, "order-1")));
        Assert.Equal(10_000 - 1_200 - 700, await BalanceAsync());

        // The same market, the same id, another amount: refused, and nothing of the first payment is shown.
        shopA.Amount = 1_300;
        var conflict = await PayAsync(a, "order-1");
        Assert.True(conflict.ExitCode == 1, conflict.ToString());
        Assert.Contains("already used pay id 'order-1' for a different message", conflict.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain(first, conflict.StandardError + conflict.StandardOutput, StringComparison.Ordinal);
        await _system.Server.WaitForOutputAsync("wallet-pay refused (conflict)", TimeSpan.FromSeconds(5));
        Assert.Equal(10_000 - 1_200 - 700, await BalanceAsync());
        Assert.Equal([first, first], shopA.Received);
    }

    [Fact]
    public async Task APayeeTheDevicesPolicyDoesNotList_IsRefusedWithNothingDebited_AndAListedOneIsPaid()
    {
        var (bank, listed, unlisted) = await BankAndTwoShopsAsync();
        await HomeAndTerminal.Ok(["home", "device", "policy", "--home", _system.Home, "--name", "phone", "--payees", listed.Name]);
        // The running server reads a device's policy again after half a second, and a declared payee within a second.
        await Task.Delay(TimeSpan.FromSeconds(1.2));
        var refilled = await RefillAsync(await StartAsync(bank.MapBank), 10_000);
        Assert.True(refilled.ExitCode == 0, refilled.ToString());

        var refused = await PayAsync(await StartAsync(unlisted.MapMarket), "tea");
        Assert.True(refused.ExitCode == 1, refused.ToString());
        Assert.Contains($"policy-refused: this device may not pay '{unlisted.Name}' (its payees: {listed.Name})", refused.StandardError, StringComparison.Ordinal);
        await _system.Server.WaitForOutputAsync("refused by policy (payees)", TimeSpan.FromSeconds(5));
        Assert.Empty(unlisted.Received);
        Assert.Equal(10_000, await BalanceAsync());

        PaymentId(await PayAsync(await StartAsync(listed.MapMarket), "tea"));
        Assert.Equal(10_000 - 1_200, await BalanceAsync());
        var list = await HomeAndTerminal.Ok(["home", "device", "list", "--home", _system.Home, "--json"]);
        var phone = JsonDocument.Parse(list.StandardOutput).RootElement.GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("name").GetString() == "phone");
        Assert.Equal([listed.Name], phone.GetProperty("policy").GetProperty("payees").EnumerateArray().Select(p => p.GetString()));
    }

    [Fact]
    public async Task WalletErrors_SayWhatTheMarketOrBankAnswered_AndTheServerLogsWhy()
    {
        var blog = await StartAsync(app => app.MapGet("/orders/{order}", () => Results.Text("this is a blog, not a shop\n")));
        using var tlsServer = await OpenSslServer.StartAsync(_system.Pki);

        var notAMarket = await PayAsync(blog, "tea");
        var statusPage = await PayAsync(new Uri($"https://localhost:{tlsServer.Port}/"), "tea");
        var clock = Stopwatch.StartNew();
        var notABank = await RefillAsync(new Uri($"https://localhost:{tlsServer.Port}/"), 1_000);
        clock.Stop();

        Assert.True(notAMarket.ExitCode == 1, notAMarket.ToString());
        Assert.Contains("answered 200 OK (text/plain): \"this is a blog, not a shop\"", notAMarket.StandardError, StringComparison.Ordinal);
        Assert.Contains("is not a COSE_Sign1 message", notAMarket.StandardError, StringComparison.Ordinal);
        Assert.True(statusPage.ExitCode == 1, statusPage.ToString());
        Assert.Contains("(text/html)", statusPage.StandardError, StringComparison.Ordinal);
        // Refused as it is decoded (bad-request naming the field) by the terminal's own agent: what is not
        // a COSE_Sign1 message never reaches the home server, so no money operation starts for it.
        Assert.Contains("field 'request' of 'wallet-pay' is not a COSE_Sign1 message", notAMarket.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("wallet-pay", _system.Server.Output.Replace("wallet-balance", ""), StringComparison.Ordinal);
        Assert.DoesNotContain("failed to handle the request", notAMarket.StandardError + statusPage.StandardError, StringComparison.Ordinal);
        // openssl s_server -www never answers a POST: the terminal says so instead of waiting a minute.
        Assert.True(notABank.ExitCode == 1, notABank.ToString());
        Assert.Contains($"localhost:{tlsServer.Port} did not answer the refill request within 10 s", notABank.StandardError, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(40), $"the refill took {clock.Elapsed}");
    }

    [Fact]
    public async Task AMarketsAnswer_ReachesTheScreenWithoutItsControlSequences_AndOneOfMegabytesIsNotRead()
    {
        var (bank, shop, greedy) = await BankAndTwoShopsAsync();
        Assert.True((await RefillAsync(await StartAsync(bank.MapBank), 5_000)).ExitCode == 0);
        // A title-setting escape, a clipboard write (OSC 52), a carriage return that would overwrite the line, a direction override.
        shop.PaymentAnswer = _ => Results.Text("paid\u001b]0;owned\u0007 \u001b]52;c;ZXZpbA==\u0007\rfake line \u202Eevil\n");
        greedy.PaymentAnswer = _ => Results.Text(new string('x', 2 * 1024 * 1024));

        var shown = await DaikoCli.RunAsync(["terminal", "wallet", "pay", "--terminal", _system.Terminal, "--market", (await StartAsync(shop.MapMarket)).ToString(), "--order", "tea"], timeout: TimeSpan.FromSeconds(90));
        var flooded = await DaikoCli.RunAsync(["terminal", "wallet", "pay", "--terminal", _system.Terminal, "--market", (await StartAsync(greedy.MapMarket)).ToString(), "--order", "tea"], timeout: TimeSpan.FromSeconds(90));

        Assert.True(shown.ExitCode == 0, shown.ToString());
        Assert.Contains("paid", shown.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("fake line", shown.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain(shown.StandardOutput, c => c is '\u001b' or '\u0007' or '\r' or '\u202E');
        Assert.True(flooded.ExitCode == 1, flooded.ToString());
        Assert.Contains("with more than 64 KiB, more than any money message; the rest was not read", flooded.StandardError, StringComparison.Ordinal);
        Assert.Contains("wallet history", flooded.StandardError, StringComparison.Ordinal);
        // Both payments were made (the card signed them before the markets answered): the flood changed nothing of that.
        Assert.Equal(5_000 - shop.Amount - greedy.Amount, await BalanceAsync());
    }

    /// <summary>A bank and two shops (1,200 and 700 a payment), declared as the owner does.</summary>
    private async Task<(MoneyPeer Bank, MoneyPeer ShopA, MoneyPeer ShopB)> BankAndTwoShopsAsync()
    {
        var parties = (new MoneyPeer("bank.e2e", _system.Dir.Path), new MoneyPeer("shop-a.e2e", _system.Dir.Path) { Amount = 1_200 }, new MoneyPeer("shop-b.e2e", _system.Dir.Path) { Amount = 700 });
        await DeclareAsync(parties.Item1, parties.Item2, parties.Item3);
        return parties;
    }

    /// <summary>Declares the bank and the markets as the owner does (<c>daiko home payee add</c>).</summary>
    private async Task DeclareAsync(MoneyPeer bank, params MoneyPeer[] markets)
    {
        await HomeAndTerminal.Ok(["home", "payee", "add", "--home", _system.Home, "--name", bank.Name, "--role", "bank", "--key", bank.KeyPath]);
        foreach (var shop in markets)
        {
            await HomeAndTerminal.Ok(["home", "payee", "add", "--home", _system.Home, "--name", shop.Name, "--role", "market", "--key", shop.KeyPath]);
        }
    }

    private async Task<Uri> StartAsync(Action<WebApplication> routes)
    {
        var server = await KestrelServer.StartAsync(_system.Pki, routes: routes);
        _peers.Add(server);
        return new Uri($"https://localhost:{server.Port}/");
    }

    private Task<CliResult> RefillAsync(Uri bank, long amount) =>
        DaikoCli.RunAsync(["terminal", "wallet", "refill", "--terminal", _system.Terminal, "--bank", bank.ToString(), "--amount", amount.ToString(System.Globalization.CultureInfo.InvariantCulture)], timeout: TimeSpan.FromSeconds(90));

    private Task<CliResult> PayAsync(Uri market, string order) =>
        DaikoCli.RunAsync(["terminal", "wallet", "pay", "--terminal", _system.Terminal, "--market", market.ToString(), "--order", order, "--json"], timeout: TimeSpan.FromSeconds(90));

    private static string PaymentId(CliResult paid)
    {
        Assert.True(paid.ExitCode == 0, paid.ToString());
        return JsonDocument.Parse(paid.StandardOutput).RootElement.GetProperty("payment_id").GetString()!;
    }

    private async Task<long> BalanceAsync()
    {
        var result = await HomeAndTerminal.Ok(["terminal", "wallet", "balance", "--terminal", _system.Terminal, "--json"]);
        return JsonDocument.Parse(result.StandardOutput).RootElement.GetProperty("balances").TryGetProperty("JPY", out var jpy) ? jpy.GetInt64() : 0;
    }
}
