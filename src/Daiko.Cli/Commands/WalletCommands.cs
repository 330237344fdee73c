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
        var wallet = new Command("wallet", "The e-money kept by the home card: balance, history, pay, refill, cancel, mail the log.");
        wallet.Subcommands.Add(Make("balance", "Show the purse's balances.", json: true, run: async (w, p, ct) =>
        {
            var (cardId, balances) = await w.BalanceAsync(ct);
            if (p.Json) Console.WriteLine(JsonSerializer.Serialize(new { card_id = cardId, balances = balances.ToDictionary(b => b.Currency, b => b.Amount) }));
            else if (balances.Count == 0) Console.WriteLine("the purse is empty");
            else foreach (var (currency, amount) in balances) Console.WriteLine($"{amount} {currency}");
        }));
        wallet.Subcommands.Add(Make("history", "Show the payment log (and whether it is intact).", json: true, run: async (w, p, ct) =>
        {
            var (entries, intact) = await w.HistoryAsync(ct);
            if (p.Json) Console.WriteLine($"{{\"intact\":{(intact ? "true" : "false")},\"entries\":[{string.Join(',', entries)}]}}");
            else
            {
                foreach (var e in entries) Console.WriteLine(e);
                Console.WriteLine(intact ? "log intact" : "WARNING: the log was altered");
            }
        }));
        var market = new Option<string>("--market") { Description = "the market's URL", Required = true };
        var order = new Option<string>("--order") { Description = "the order id", Required = true };
        wallet.Subcommands.Add(Make("pay", "Pay an order at a market with the home card's e-money.", extra: [market, order], run: async (w, p, ct) =>
        {
            var (paymentId, answer) = await w.PayAsync(new Uri(p.Parse.GetValue(market)!), p.Parse.GetValue(order)!, ct);
            Console.WriteLine(answer);
            Console.Error.WriteLine($"daiko: payment id {paymentId} (cancel within 7 days with 'wallet cancel --payment {paymentId}')");
        }));
        var bank = new Option<string>("--bank") { Description = "the bank's URL", Required = true };
        var amount = new Option<long>("--amount") { Description = "amount in minor units", Required = true };
        var currency = new Option<string>("--currency") { Description = "currency", DefaultValueFactory = _ => "JPY" };
        wallet.Subcommands.Add(Make("refill", "Refill the purse from the bank.", extra: [bank, amount, currency], run: async (w, p, ct) =>
            Console.WriteLine(await w.RefillAsync(new Uri(p.Parse.GetValue(bank)!), p.Parse.GetValue(amount), p.Parse.GetValue(currency)!, ct))));
        var payment = new Option<string>("--payment") { Description = "the payment id", Required = true };
        wallet.Subcommands.Add(Make("cancel", "Cancel a payment made within the last 7 days.", extra: [payment], run: async (w, p, ct) =>
            Console.WriteLine($"cancelled; balance now {await w.CancelAsync(p.Parse.GetValue(payment)!, ct)}")));
        wallet.Subcommands.Add(Make("mail", "Mail the payment log now.", run: async (w, p, ct) =>
        {
            var (sent, pending) = await w.MailAsync(ct);
            Console.WriteLine(sent > 0 ? "payment log mailed" : $"the mail server is unreachable; {pending} report(s) queued and retried");
        }));
        parent.Subcommands.Add(wallet);
    }

    private sealed record Invocation(ParseResult Parse, bool Json);

    private static Command Make(string name, string description, Func<WalletClient, Invocation, CancellationToken, Task> run, bool json = false, Option[]? extra = null)
    {
        var command = new Command(name, description);
        var terminal = TerminalCommands.TerminalOption();
        command.Options.Add(terminal);
        var jsonOption = new Option<bool>("--json") { Description = "print JSON" };
        if (json) command.Options.Add(jsonOption);
        foreach (var o in extra ?? []) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            try
            {
                await using var control = await AgentClient.ConnectAsync(parse.GetValue(terminal)!, ct);
                await run(new WalletClient(control), new Invocation(parse, json && parse.GetValue(jsonOption)), ct);
                return 0;
            }
            catch (ControlErrorException e)
            {
                return CliConsole.Fail(e.Message);
            }
            catch (HttpRequestException e)
            {
                return CliConsole.Fail($"the market or bank could not be reached: {e.Message}");
            }
        });
        return command;
    }
}
