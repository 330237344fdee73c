using System.CommandLine;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Home.Hosting;
using Daiko.Home.Money;
using Daiko.Home.Storage;

namespace Daiko.Cli.Commands;

/// <summary>
/// Where a payee command's payees live: the options that name the place, the payee store they lead to, and the home
/// directory whose <c>payees/</c> may hold keys from older versions (none on a hosted site).
/// </summary>
internal sealed record PayeePlace(Option[] Options, Func<ParseResult, IPayeeStore> Store, Func<ParseResult, string?> LegacyDirectory);

/// <summary>
/// <c>daiko home payee add|list|remove</c> and <c>daiko host payee … --owner NAME</c>: the markets and banks whose money
/// messages the home card (a hosted owner's card) accepts. One set of commands over the place its options name.
/// </summary>
internal static class PayeeCommands
{
    /// <summary><c>home payee</c>: the home directory's store.</summary>
    public static Command ForHome() => Build("home", "--home ~/daiko-home", () =>
    {
        var home = HomeCardCommands.HomeOption();
        return new PayeePlace([home], parse => new SqlPayeeStore(HomeStore.ForHome(parse.GetValue(home)!)), parse => parse.GetValue(home));
    });

    /// <summary><c>host payee --owner NAME</c>: that owner's schema (every node applies a change within a second).</summary>
    public static Command ForHostedOwner() => Build("host", "--site /etc/daiko/site --owner alice", () =>
    {
        var site = HostCommands.SiteOption();
        var owner = HostCommands.OwnerOption();
        return new PayeePlace([site, owner], parse => new SqlPayeeStore(HostDeviceCommands.OwnerStore(parse.GetValue(site)!, parse.GetValue(owner)!)), _ => null);
    });

    private static Command Build(string scope, string where, Func<PayeePlace> place)
    {
        var payee = new Command("payee", $"The markets and banks the {(scope == "home" ? "home card" : "owner's card")} deals with: a bank's refills are credited, a market's payment requests are paid.")
            .WithExamples($"daiko {scope} payee add {where} --name bank.example --role bank --key bank-money-key.pem", $"daiko {scope} payee list {where}");
        payee.Subcommands.Add(Add(scope, where, place()));
        payee.Subcommands.Add(List(scope, where, place()));
        payee.Subcommands.Add(Remove(scope, where, place()));
        return payee;
    }

    private static Command Add(string scope, string where, PayeePlace place)
    {
        var command = new Command("add", $"Declare a market or bank and the EC public key that signs its money messages (a running {(scope == "home" ? "home server applies" : "node, and every other, apply")} it within a second).")
            .WithExamples($"daiko {scope} payee add {where} --name bank.example --role bank --key bank-money-key.pem",
                $"daiko {scope} payee add {where} --name shop.example --role market --key shop-money-key.pem --json");
        var name = new Option<string>("--name") { Description = "the payee's id, as its money messages name it (letters, digits, dots, dashes)", Required = true, HelpName = "NAME" };
        name.Validators.Add(r => { if (r.GetValueOrDefault<string>() is { } n && !PayeeDirectory.IsName(n)) r.AddError($"--name takes letters, digits, dots and dashes (the id in the payee's money messages), not '{n}'"); });
        var role = new Option<string>("--role") { Description = "bank (signs refills) or market (signs payment requests)", Required = true, HelpName = "ROLE" };
        role.AcceptOnlyFromAmong("bank", "market");
        var key = new Option<string>("--key") { Description = "PEM file with the payee's EC public key (or its certificate)", Required = true, HelpName = "PEM" }.ExistingFile();
        var json = CliOutput.JsonOption();
        foreach (var o in place.Options.Concat([name, role, key, json])) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            string pem;
            try
            {
                pem = PublicKeyPem(File.ReadAllText(parse.GetValue(key)!));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return CliConsole.Fail($"cannot read {parse.GetValue(key)}: {e.Message}");
            }
            if (pem.Length == 0) return CliConsole.Fail($"{parse.GetValue(key)} holds no EC public key or certificate in PEM (money messages are signed with ES256, P-256)");
            var payeeRole = parse.GetValue(role) == "bank" ? PayeeRole.Bank : PayeeRole.Market;
            await place.Store(parse).AddAsync(new Payee(parse.GetValue(name)!, payeeRole, pem, DateTimeOffset.UtcNow), ct);
            CliOutput.Print(parse.GetValue(json), new { added = parse.GetValue(name), role = parse.GetValue(role) },
                $"{parse.GetValue(role)} '{parse.GetValue(name)}' added: its {(payeeRole == PayeeRole.Bank ? "refills are credited" : "payment requests can be paid")}");
            return 0;
        });
        return command;
    }

    /// <summary>The SubjectPublicKeyInfo PEM of an EC public key, certificate or key pair in <paramref name="text"/> ("" when there is none).</summary>
    private static string PublicKeyPem(string text)
    {
        try
        {
            if (text.Contains("-----BEGIN CERTIFICATE-----", StringComparison.Ordinal))
            {
                using var certificate = X509Certificate2.CreateFromPem(text);
                using var fromCertificate = certificate.GetECDsaPublicKey();
                return fromCertificate?.ExportSubjectPublicKeyInfoPem() ?? "";
            }
            using var ec = ECDsa.Create();
            ec.ImportFromPem(text);
            return ec.ExportSubjectPublicKeyInfoPem();
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            return "";
        }
    }

    private static Command List(string scope, string where, PayeePlace place)
    {
        var command = new Command("list", scope == "home"
                ? "List the declared markets and banks (keys in DIR/payees/ from older versions count as markets)."
                : "List the owner's declared markets and banks.")
            .WithExamples($"daiko {scope} payee list {where} --json");
        var json = CliOutput.JsonOption();
        foreach (var o in place.Options.Append(json)) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            var declared = await place.Store(parse).ListAsync(ct);
            var rows = declared.Select(p => (p.Name, Role: p.Role == PayeeRole.Bank ? "bank" : "market", Source: "declared", Key: KeyId(p.PublicKeyPem))).ToList();
            if (place.LegacyDirectory(parse) is { } dir)
            {
                rows.AddRange(PayeeDirectory.LegacyFiles(dir).Where(f => declared.All(p => p.Name != f.Name)).Select(f => (f.Name, Role: "market", Source: "payees/" + f.Name + ".pem", Key: KeyId(f.Pem))));
            }
            rows.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
            var human = rows.Count == 0
                ? $"no payee is declared: add a bank with 'daiko {scope} payee add --role bank' and markets with '--role market'"
                : string.Join('\n', rows.Select(r => $"{r.Name,-28} {r.Role,-7} key {r.Key}  ({r.Source})"))
                  + (rows.Any(r => r.Role == "bank") ? "" : "\nno bank is declared: refills are refused until one is");
            CliOutput.Print(parse.GetValue(json), new { payees = rows.Select(r => new { name = r.Name, role = r.Role, key_id = r.Key, source = r.Source }).ToList() }, human);
            return 0;
        });
        return command;
    }

    /// <summary>The first 16 hex digits of the SHA-256 of the key's SubjectPublicKeyInfo (how a person tells keys apart).</summary>
    private static string KeyId(string pem)
    {
        try
        {
            using var ec = ECDsa.Create();
            ec.ImportFromPem(pem);
            return Convert.ToHexString(SHA256.HashData(ec.ExportSubjectPublicKeyInfo()))[..16].ToLowerInvariant();
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            return "unreadable";
        }
    }

    private static Command Remove(string scope, string where, PayeePlace place)
    {
        var command = new Command("remove", $"Stop dealing with a market or bank (a running {(scope == "home" ? "home server applies" : "node, and every other, apply")} it within a second).")
            .WithExamples($"daiko {scope} payee remove {where} --name shop.example");
        var name = new Option<string>("--name") { Description = "the payee's name as 'payee list' shows it", Required = true, HelpName = "NAME" };
        var json = CliOutput.JsonOption();
        foreach (var o in place.Options.Concat([name, json])) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            var payeeName = parse.GetValue(name)!;
            var removed = await place.Store(parse).RemoveAsync(payeeName, ct);
            var legacy = place.LegacyDirectory(parse) is { } dir && PayeeDirectory.IsName(payeeName) ? Path.Combine(dir, "payees", payeeName + ".pem") : null;
            if (legacy is not null && File.Exists(legacy))
            {
                File.Delete(legacy);
                removed = true;
            }
            if (!removed) return CliConsole.Fail($"no payee is named '{payeeName}': see 'daiko {scope} payee list'");
            CliOutput.Print(parse.GetValue(json), new { removed = payeeName }, $"payee '{payeeName}' removed");
            return 0;
        });
        return command;
    }
}
