using System.CommandLine;
using System.Security.Cryptography;
using System.Text.Json;
using Daiko.Home.Hosting;
using Daiko.Home.Trust;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko home trust add|list|remove</c> and <c>daiko host trust add|list|remove</c>: one set of commands over the directory their options name.</summary>
internal static class TrustCommands
{
    /// <summary><c>home trust</c>: the home directory's roots.</summary>
    public static Command Build() => Trust("home", "--home ~/daiko-home", "Trust roots for validating market certificates (the system roots when none is added).",
        "a running home server", () =>
        {
            var home = HomeCardCommands.HomeOption();
            return ([home], parse => parse.GetValue(home)!);
        });

    /// <summary><c>host trust</c>: the site's roots, for every owner (nodes pick a change up within a second).</summary>
    public static Command ForSite() => Trust("host", "--site /etc/daiko/site", "Trust roots for validating market certificates, for every owner of the site (the system roots when none is added).",
        "every node", () =>
        {
            var site = HostCommands.SiteOption();
            return ([site], parse => Daiko.Host.HostSite.Open(parse.GetValue(site)!).Directory);
        });

    /// <summary>
    /// add, list and remove over the directory the place's options name (<paramref name="place"/> makes the options afresh
    /// for each command); <paramref name="appliedBy"/> says who picks a change up.
    /// </summary>
    private static Command Trust(string scope, string where, string description, string appliedBy, Func<(Option[] Options, Func<ParseResult, string> Directory)> place)
    {
        var trust = new Command("trust", description)
            .WithExamples($"daiko {scope} trust add {where} --ca market-roots.pem", $"daiko {scope} trust list {where}");
        var add = new Command("add", $"Trust the CA certificate(s) in a PEM file for markets ({appliedBy} picks it up within a second); a certificate that is not a CA is refused.")
            .WithExamples($"daiko {scope} trust add {where} --ca market-roots.pem");
        var (addWhere, addDirectory) = place();
        var ca = new Option<string>("--ca") { Description = "PEM file of CA certificates", Required = true, HelpName = "PEM" }.ExistingFile();
        var json = CliOutput.JsonOption();
        foreach (var o in addWhere.Concat([ca, json])) add.Options.Add(o);
        add.SetAction(parse =>
        {
            try
            {
                var directory = addDirectory(parse);
                var before = MarketTrust.List(directory).Select(r => r.Thumbprint).ToHashSet();
                MarketTrust.Add(directory, parse.GetValue(ca)!);
                var added = MarketTrust.List(directory).Where(r => !before.Contains(r.Thumbprint)).ToList();
                CliOutput.Print(parse.GetValue(json), new { added = added.Select(Row).ToList() },
                    added.Count == 0 ? "already trusted: nothing added" : string.Join('\n', added.Select(r => $"trusted {r.Subject} ({r.Thumbprint})")));
                return 0;
            }
            catch (Exception e) when (e is IOException or CryptographicException or InvalidDataException or ArgumentException)
            {
                return CliConsole.Fail($"cannot add the trust root: {e.Message}");
            }
        });
        trust.Subcommands.Add(add);

        var list = new Command("list", "List the roots added for markets (none: the system roots are used).").WithExamples($"daiko {scope} trust list {where} --json");
        var (listWhere, listDirectory) = place();
        var listJson = CliOutput.JsonOption();
        foreach (var o in listWhere.Append(listJson)) list.Options.Add(o);
        list.SetAction(parse =>
        {
            var roots = MarketTrust.List(listDirectory(parse));
            CliOutput.Print(parse.GetValue(listJson), new { roots = roots.Select(Row).ToList() },
                roots.Count == 0 ? "no root added: markets are checked against the system roots" : string.Join('\n', roots.Select(r => $"{r.Thumbprint}  {r.Subject}  (until {r.NotAfter:yyyy-MM-dd})")));
            return 0;
        });
        trust.Subcommands.Add(list);

        var remove = new Command("remove", "Stop trusting a root added with 'trust add'.").WithExamples($"daiko {scope} trust remove {where} --thumbprint 3f2a9c01");
        var (removeWhere, removeDirectory) = place();
        var thumbprint = new Option<string>("--thumbprint") { Description = "the root's thumbprint as 'trust list' shows it (at least its first 8 characters)", Required = true, HelpName = "HEX" };
        var removeJson = CliOutput.JsonOption();
        foreach (var o in removeWhere.Concat([thumbprint, removeJson])) remove.Options.Add(o);
        remove.SetAction(parse =>
        {
            if (!MarketTrust.Remove(removeDirectory(parse), parse.GetValue(thumbprint)!))
            {
                return CliConsole.Fail($"no single added root has a thumbprint starting with '{parse.GetValue(thumbprint)}': see 'daiko {scope} trust list'");
            }
            CliOutput.Print(parse.GetValue(removeJson), new { removed = parse.GetValue(thumbprint) }, $"no longer trusted: {parse.GetValue(thumbprint)}");
            return 0;
        });
        trust.Subcommands.Add(remove);
        return trust;
    }

    private static object Row((string Thumbprint, string Subject, DateTime NotAfter) r) => new { thumbprint = r.Thumbprint, subject = r.Subject, not_after = r.NotAfter };
}
