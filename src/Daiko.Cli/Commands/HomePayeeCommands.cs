using System.CommandLine;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Home.Hosting;
using Daiko.Home.Money;
using Daiko.Home.Storage;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko home payee add|list|remove</c>: the markets and banks whose money messages the home card accepts.</summary>
internal static class HomePayeeCommands
{
    public static Command Build()
    {
        var payee = new Command("payee", "The markets and banks the home card deals with: a bank's refills are credited, a market's payment requests are paid.")
            .WithExamples("daiko home payee add --home ~/daiko-home --name bank.example --role bank --key bank-money-key.pem", "daiko home payee list --home ~/daiko-home");
        payee.Subcommands.Add(Add());
        payee.Subcommands.Add(List());
        payee.Subcommands.Add(Remove());
        return payee;
    }

    private static IPayeeStore Store(string home) => new SqlPayeeStore(HomeStore.ForHome(home));

    private static Command Add()
    {
        var command = new Command("add", "Declare a market or bank and the EC public key that signs its money messages (a running home server applies it within a second).")
            .WithExamples("daiko home payee add --home ~/daiko-home --name bank.example --role bank --key bank-money-key.pem",
                "daiko home payee add --home ~/daiko-home --name shop.example --role market --key shop-money-key.pem --json");
        var home = HomeCardCommands.HomeOption();
        var name = new Option<string>("--name") { Description = "the payee's id, as its money messages name it (letters, digits, dots, dashes)", Required = true, HelpName = "NAME" };
        name.Validators.Add(r => { if (r.GetValueOrDefault<string>() is { } n && !PayeeDirectory.IsName(n)) r.AddError($"--name takes letters, digits, dots and dashes (the id in the payee's money messages), not '{n}'"); });
        var role = new Option<string>("--role") { Description = "bank (signs refills) or market (signs payment requests)", Required = true, HelpName = "ROLE" };
        role.AcceptOnlyFromAmong("bank", "market");
        var key = new Option<string>("--key") { Description = "PEM file with the payee's EC public key (or its certificate)", Required = true, HelpName = "PEM" }.ExistingFile();
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { home, name, role, key, json }) command.Options.Add(o);
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
            await Store(parse.GetValue(home)!).AddAsync(new Payee(parse.GetValue(name)!, payeeRole, pem, DateTimeOffset.UtcNow), ct);
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

    private static Command List()
    {
        var command = new Command("list", "List the declared markets and banks (keys in DIR/payees/ from older versions count as markets).")
            .WithExamples("daiko home payee list --home ~/daiko-home --json");
        var home = HomeCardCommands.HomeOption();
        var json = CliOutput.JsonOption();
        command.Options.Add(home);
        command.Options.Add(json);
        command.SetAction(async (parse, ct) =>
        {
            var dir = parse.GetValue(home)!;
            var declared = await Store(dir).ListAsync(ct);
            var rows = declared.Select(p => (p.Name, Role: p.Role == PayeeRole.Bank ? "bank" : "market", Source: "declared", Key: KeyId(p.PublicKeyPem))).ToList();
            rows.AddRange(PayeeDirectory.LegacyFiles(dir).Where(f => declared.All(p => p.Name != f.Name)).Select(f => (f.Name, Role: "market", Source: "payees/" + f.Name + ".pem", Key: KeyId(f.Pem))));
            rows.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
            var human = rows.Count == 0
                ? "no payee is declared: add a bank with 'daiko home payee add --role bank' and markets with '--role market'"
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

    private static Command Remove()
    {
        var command = new Command("remove", "Stop dealing with a market or bank (a running home server applies it within a second).")
            .WithExamples("daiko home payee remove --home ~/daiko-home --name shop.example");
        var home = HomeCardCommands.HomeOption();
        var name = new Option<string>("--name") { Description = "the payee's name as 'payee list' shows it", Required = true, HelpName = "NAME" };
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { home, name, json }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            var dir = parse.GetValue(home)!;
            var payeeName = parse.GetValue(name)!;
            var removed = await Store(dir).RemoveAsync(payeeName, ct);
            var legacy = PayeeDirectory.IsName(payeeName) ? Path.Combine(dir, "payees", payeeName + ".pem") : null;
            if (legacy is not null && File.Exists(legacy))
            {
                File.Delete(legacy);
                removed = true;
            }
            if (!removed) return CliConsole.Fail($"no payee is named '{payeeName}': see 'daiko home payee list'");
            CliOutput.Print(parse.GetValue(json), new { removed = payeeName }, $"payee '{payeeName}' removed");
            return 0;
        });
        return command;
    }
}
