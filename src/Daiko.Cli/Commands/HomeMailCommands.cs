using System.CommandLine;
using Daiko.Home.Mail;
using Daiko.Home.Hosting;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko home mail set</c>, and the options it shares with <c>host mail set</c>.</summary>
internal static class HomeMailCommands
{
    public static Command Mail()
    {
        var mail = new Command("mail", "Where the home server mails the payment log.").WithExamples("daiko home mail set --home ~/daiko-home --smtp smtp.example:25 --from daiko@home.example --to alice@example.org");
        var set = new Command("set", "Set the SMTP server and the addresses the payment log is mailed from and to.")
            .WithExamples("daiko home mail set --home ~/daiko-home --smtp smtp.example:25 --from daiko@home.example --to alice@example.org");
        var home = HomeCardCommands.HomeOption();
        set.Options.Add(home);
        var options = new MailOptions(set);
        set.SetAction(parse =>
        {
            var settings = options.Settings(parse);
            HomeServer.SetMail(parse.GetValue(home)!, settings);
            options.Print(parse, settings, "a running home server reads this at its next mail");
            return 0;
        });
        mail.Subcommands.Add(set);
        return mail;
    }
}

/// <summary>The options of <c>home mail set</c> and <c>host mail set</c>: the SMTP server and the two addresses, checked while parsing.</summary>
internal sealed class MailOptions
{
    private readonly Option<string> _smtp = new Option<string>("--smtp") { Description = "the SMTP server", Required = true }.HostPort();
    private readonly Option<string> _from = new("--from") { Description = "the sender address", Required = true, HelpName = "ADDRESS" };
    private readonly Option<string> _to = new("--to") { Description = "the owner's address", Required = true, HelpName = "ADDRESS" };
    private readonly Option<bool> _json = CliOutput.JsonOption();

    public MailOptions(Command command)
    {
        foreach (var o in new Option[] { _smtp, _from, _to, _json }) command.Options.Add(o);
        command.Validators.Add(r =>
        {
            foreach (var o in new[] { _from, _to })
            {
                if (r.GetValue(o) is { } address && !Daiko.Home.Mail.ReportOutbox.IsMailAddress(address)) r.AddError($"{o.Name} takes a mail address like alice@example.org (got '{address}')");
            }
        });
    }

    public MailSettings Settings(ParseResult parse)
    {
        var server = parse.GetValue(_smtp)!;
        var colon = server.LastIndexOf(':');
        return new MailSettings(server[..colon].Trim('[', ']'), int.Parse(server[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture), parse.GetValue(_from)!, parse.GetValue(_to)!);
    }

    public void Print(ParseResult parse, MailSettings settings, string when)
    {
        var server = parse.GetValue(_smtp)!;
        CliOutput.Print(parse.GetValue(_json), new { smtp = server, from = settings.From, to = settings.To },
            $"the payment log will be mailed from {settings.From} to {settings.To} through {server} ({when})");
    }
}
