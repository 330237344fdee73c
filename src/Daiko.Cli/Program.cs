using System.CommandLine;
using Daiko.Cli.Commands;

namespace Daiko.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand(
            "Daiko: a credential-holding proxy. Your certificate, private key and e-money stay in the home card " +
            "on your home server; terminals get authenticated TLS sessions through it.");

        root.Subcommands.Add(TlsCommands.Build());

        var home = new Command("home", "Run and administer the home server and its home card.");
        HomeCardCommands.AddTo(home);
        HomeServerCommands.AddTo(home);
        root.Subcommands.Add(home);

        var terminal = new Command("terminal", "Use Daiko from a terminal: enroll, unlock, fetch through delegated sessions, pay.");
        TerminalCommands.AddTo(terminal);
        WalletCommands.AddTo(terminal);
        root.Subcommands.Add(terminal);

        root.Subcommands.Add(DemoCommand.Build());
        return root.Parse(args).Invoke();
    }
}
