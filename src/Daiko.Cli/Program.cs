using System.CommandLine;
using Daiko.Cli.Commands;

namespace Daiko.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        PrivateFiles.RestrictUmask();
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

        root.Subcommands.Add(HostCommands.Build());
        root.Subcommands.Add(DemoCommand.Build());
        CliHelp.Install(root);
        try
        {
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0 && parse.Action is not System.CommandLine.Help.HelpAction && !args.Contains("--help") && !args.Contains("-h")) return CliChecks.ReportUsage(parse);
            if (parse.Errors.Count == 0) PrivateFiles.TightenFor(parse);
            try
            {
                return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
            }
            finally
            {
                CommandResources.CloseAll();
            }
        }
        catch (Exception e) when (((Exception?)Find<CliInputException>(e) ?? Find<CliUsageException>(e)) is { } mistake)
        {
            CliConsole.Fail(mistake.Message);
            return CliConsole.Usage;
        }
        catch (InvalidOperationException e) when (e.Message.StartsWith("Cannot parse argument", StringComparison.Ordinal) || e.Message.Contains("not recognized. Must be one of", StringComparison.Ordinal))
        {
            // A validator read a value that does not parse (System.CommandLine throws rather than report it): a usage mistake.
            CliConsole.Fail(CliChecks.Plain(e.Message));
            return CliConsole.Usage;
        }
        catch (Exception e) when (Find<Daiko.Protocol.ControlErrorException>(e) is { } refused)
        {
            Debug(e);
            return CliConsole.Fail(refused.Message);
        }
        catch (Exception e) when (Find<Microsoft.Data.Sqlite.SqliteException>(e) is { } db)
        {
            Debug(e);
            return CliConsole.Fail(db.SqliteErrorCode is 11 or 26
                ? $"a Daiko database file is damaged ({db.Message.TrimEnd('.')}); nothing was changed: restore it from a backup"
                : $"the database refused the operation ({db.Message.TrimEnd('.')})");
        }
        catch (Exception e) when (Find<Npgsql.NpgsqlException>(e) is { } pg)
        {
            Debug(e);
            return CliConsole.Fail($"the PostgreSQL store failed ({pg.Message.TrimEnd('.')})");
        }
        catch (Exception e)
        {
            // Every expected failure is reported by its command in one sentence; this is a bug. Exception
            // messages never carry secrets, so the sentence is safe to show; the trace is on request.
            Debug(e);
            CliConsole.Fail($"unexpected error ({e.GetType().Name}: {e.Message}); run with DAIKO_DEBUG=1 for details");
            return 70;
        }
    }

    private static T? Find<T>(Exception? e) where T : Exception
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is T found) return found;
            if (e is AggregateException { InnerExceptions.Count: > 0 } aggregate) return aggregate.InnerExceptions.Select(Find<T>).FirstOrDefault(x => x is not null);
        }
        return null;
    }

    private static void Debug(Exception e)
    {
        if (Environment.GetEnvironmentVariable("DAIKO_DEBUG") == "1") Console.Error.WriteLine(e);
    }
}
