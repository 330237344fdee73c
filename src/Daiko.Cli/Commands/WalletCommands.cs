using System.CommandLine;
using System.Text.Json;
using Daiko.Protocol;
using Daiko.Terminal.Agent;
using Daiko.Terminal.Wallet;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko terminal wallet balance|history|pay|refill|cancel|mail</c>.</summary>
internal static class WalletCommands
{
    public static void AddTo(Command parent)
    {
        var wallet = new Command("wallet", "The e-money kept by the home card: balance, history, pay, refill, cancel, mail the log.")
            .WithExamples("daiko terminal wallet balance --terminal ~/.daiko");
        wallet.Subcommands.Add(Make("balance", "Show the purse's balances.", json: true, examples: "daiko terminal wallet balance --terminal ~/.daiko --json", run: async (w, p, ct) =>
        {
            var (cardId, balances) = await w.BalanceAsync(ct);
            if (p.Json) Console.WriteLine(JsonSerializer.Serialize(new { card_id = cardId, balances = balances.ToDictionary(b => b.Currency, b => b.Amount) }));
            else if (balances.Count == 0) Console.WriteLine("the purse is empty");
            else foreach (var (currency, amount) in balances) Console.WriteLine($"{amount} {currency}");
        }));
        wallet.Subcommands.Add(Make("history", "Show the payment log (and whether it is intact).", json: true, examples: "daiko terminal wallet history --terminal ~/.daiko", run: async (w, p, ct) =>
        {
            var (entries, intact) = await w.HistoryAsync(ct);
            if (p.Json) Console.WriteLine($"{{\"intact\":{(intact ? "true" : "false")},\"entries\":[{string.Join(',', entries)}]}}");
            else
            {
                foreach (var e in entries) Console.WriteLine(HumanEntry(e));
                Console.WriteLine(intact ? "log intact" : "WARNING: the log was altered");
            }
        }));
        var market = new Option<string>("--market") { Description = "the market", Required = true }.HttpsUrl();
        var order = new Option<string>("--order") { Description = "the order id", Required = true, HelpName = "ID" };
        wallet.Subcommands.Add(Make("pay", "Pay an order at a market with the home card's e-money.", json: true, extra: [market, order],
            examples: "daiko terminal wallet pay --terminal ~/.daiko --market https://market.example/ --order 42", run: async (w, p, ct) =>
        {
            var (paymentId, answer) = await w.PayAsync(new Uri(p.Parse.GetValue(market)!), p.Parse.GetValue(order)!, ct);
            CliOutput.Print(p.Json, new { payment_id = paymentId, market = answer }, answer);
            if (!p.Json) Console.Error.WriteLine($"daiko: payment id {paymentId} (cancel within 7 days with 'wallet cancel --payment {paymentId}')");
        }));
        var bank = new Option<string>("--bank") { Description = "the bank", Required = true }.HttpsUrl();
        var amount = new Option<long>("--amount") { Description = "amount in minor units (e.g. yen, cents), more than 0", Required = true, HelpName = "AMOUNT" };
        amount.Validators.Add(r => { if (r.GetValueOrDefault<long>() <= 0) r.AddError("--amount must be more than 0 (in minor units, e.g. 10000)"); });
        var currency = new Option<string>("--currency") { Description = "currency", DefaultValueFactory = _ => "JPY", HelpName = "CODE" };
        wallet.Subcommands.Add(Make("refill", "Refill the purse from the bank.", json: true, extra: [bank, amount, currency],
            examples: "daiko terminal wallet refill --terminal ~/.daiko --bank https://bank.example/ --amount 10000", run: async (w, p, ct) =>
        {
            var answer = await w.RefillAsync(new Uri(p.Parse.GetValue(bank)!), p.Parse.GetValue(amount), p.Parse.GetValue(currency)!, ct);
            CliOutput.Print(p.Json, new { bank = answer }, answer);
        }));
        var payment = new Option<string>("--payment") { Description = "the payment id 'wallet pay' printed", Required = true, HelpName = "ID" };
        wallet.Subcommands.Add(Make("cancel", "Cancel a payment made within the last 7 days.", json: true, extra: [payment],
            examples: "daiko terminal wallet cancel --terminal ~/.daiko --payment PAYMENT-ID", run: async (w, p, ct) =>
        {
            var balance = await w.CancelAsync(p.Parse.GetValue(payment)!, ct);
            CliOutput.Print(p.Json, new { cancelled = p.Parse.GetValue(payment), balance }, $"cancelled; balance now {balance}");
        }));
        wallet.Subcommands.Add(Make("mail", "Mail the payment log now (once a minute a device).", json: true, examples: "daiko terminal wallet mail --terminal ~/.daiko", run: async (w, p, ct) =>
        {
            var (sent, pending) = await w.MailAsync(ct);
            CliOutput.Print(p.Json, new { sent, pending }, sent > 0 ? "payment log mailed" : $"the mail server is unreachable; {pending} report(s) queued and retried");
        }));
        parent.Subcommands.Add(wallet);
    }

    private sealed record Invocation(ParseResult Parse, bool Json);

    /// <summary>The home server's refusal inside <paramref name="e"/> (HttpClient wraps what its connection step threw), if any.</summary>
    private static ControlErrorException? RefusalIn(Exception e)
    {
        for (var inner = e.InnerException; inner is not null; inner = inner.InnerException)
        {
            if (inner is ControlErrorException refused) return refused;
        }
        return null;
    }

    /// <summary>One log entry (a JSON object) as one line for a person: "name value" pairs.</summary>
    private static string HumanEntry(string entry)
    {
        try
        {
            using var doc = JsonDocument.Parse(entry);
            return doc.RootElement.ValueKind == JsonValueKind.Object
                ? string.Join("  ", doc.RootElement.EnumerateObject().Select(p => $"{p.Name} {(p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : p.Value.GetRawText())}"))
                : entry;
        }
        catch (JsonException)
        {
            return entry;
        }
    }

    private static Command Make(string name, string description, Func<WalletClient, Invocation, CancellationToken, Task> run, bool json = false, Option[]? extra = null, string? examples = null)
    {
        var command = new Command(name, description);
        if (examples is not null) command.WithExamples(examples);
        var terminal = TerminalCommands.TerminalOption();
        command.Options.Add(terminal);
        var jsonOption = CliOutput.JsonOption();
        if (json) command.Options.Add(jsonOption);
        var stats = TerminalStats.Option();
        command.Options.Add(stats);
        foreach (var o in extra ?? []) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            try
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                using var waiting = extra is null ? null : CliConsole.ProgressAfter(TimeSpan.FromSeconds(2), "the market or bank has not answered within 2 s; still waiting (up to 60 s; Ctrl-C to give up)");
                await using var control = await AgentClient.ConnectAsync(parse.GetValue(terminal)!, ct);
                var sessions = new System.Collections.Concurrent.ConcurrentQueue<Daiko.Terminal.Sessions.DelegatedSession>();
                await run(new WalletClient(control) { OnSession = sessions.Enqueue }, new Invocation(parse, json && parse.GetValue(jsonOption)), ct);
                waiting?.Dispose();
                if (parse.GetValue(stats)) Console.Error.WriteLine(await TerminalStats.CommandLineAsync(control, sessions, clock.Elapsed, ct));
                return 0;
            }
            catch (TaskCanceledException) when (!ct.IsCancellationRequested)
            {
                return CliConsole.Fail("the market or bank did not answer within 60 s (see 'wallet history' for what the home card recorded)");
            }
            catch (InvalidDataException e)
            {
                return CliConsole.Fail($"the market or bank did not answer as a Daiko market or bank does: {e.Message} (see 'wallet history' for what the home card recorded)");
            }
            catch (ControlErrorException e)
            {
                return CliConsole.Fail(e.Message);
            }
            catch (HttpRequestException e) when (RefusalIn(e) is { } refused)
            {
                // The session to the market was refused by the home server (a policy, a locked card): said as it is.
                return CliConsole.Fail(refused.Message);
            }
            catch (HttpRequestException e)
            {
                return CliConsole.Fail($"the market or bank could not be reached: {e.Message}");
            }
        });
        return command;
    }
}
