using System.CommandLine;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Daiko.Cards;
using Daiko.Home.Trust;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko home init</c>, <c>home cert …</c>, <c>home card …</c>, <c>home trust add</c>.</summary>
internal static class HomeCardCommands
{
    public static Option<string> HomeOption() => new("--home") { Description = "the home server's directory", Required = true };

    public static HomeCardOptions CardOptions(ParseResult parse, Option<string> home, Option<string?>? module = null, Option<string?>? label = null)
    {
        var options = new HomeCardOptions(parse.GetValue(home)!);
        if (module is not null && parse.GetValue(module) is { } so) options = options with { ModulePath = so };
        if (label is not null && parse.GetValue(label) is { } l) options = options with { TokenLabel = l };
        return options;
    }

    public static void AddTo(Command parent)
    {
        parent.Subcommands.Add(Init());
        var cert = new Command("cert", "Import the certificate issued for the home card's key.");
        cert.Subcommands.Add(ImportCert());
        cert.Subcommands.Add(ImportP12());
        parent.Subcommands.Add(cert);
        var card = new Command("card", "Inspect or unblock the home card.");
        card.Subcommands.Add(Status());
        card.Subcommands.Add(Unblock());
        parent.Subcommands.Add(card);
        var trust = new Command("trust", "Trust roots for validating market certificates (system roots by default).");
        var add = new Command("add", "Trust the CA certificate(s) in a PEM file for markets.");
        var home = HomeOption();
        var ca = new Option<string>("--ca") { Description = "PEM file of CA certificates", Required = true };
        add.Options.Add(home);
        add.Options.Add(ca);
        add.SetAction(parse =>
        {
            try
            {
                MarketTrust.Add(parse.GetValue(home)!, parse.GetValue(ca)!);
                return 0;
            }
            catch (Exception e) when (e is IOException or CryptographicException or InvalidDataException)
            {
                return CliConsole.Fail($"cannot add the trust root: {e.Message}");
            }
        });
        trust.Subcommands.Add(add);
        parent.Subcommands.Add(trust);
    }

    private static Command Init()
    {
        var command = new Command("init", "Create the home card: PIN1, PIN2 and the admin unblock code from stdin (one a line); generates the user's key on the token and writes DIR/user.csr.");
        var home = HomeOption();
        var module = new Option<string?>("--pkcs11-module") { Description = "PKCS#11 module (default: an embedded SoftHSM2 token store inside DIR)" };
        var label = new Option<string?>("--token-label") { Description = "token label (default daiko-home)" };
        var keyType = new Option<string>("--key-type") { Description = "p256, p384 or rsa3072", DefaultValueFactory = _ => "p256" };
        keyType.AcceptOnlyFromAmong("p256", "p384", "rsa3072");
        var subject = new Option<string>("--subject") { Description = "subject of the CSR", DefaultValueFactory = _ => "CN=Daiko User" };
        foreach (var o in new Option[] { home, module, label, keyType, subject }) command.Options.Add(o);
        command.SetAction(parse =>
        {
            var options = CardOptions(parse, home, module, label);
            var pin1 = CliConsole.ReadSecret("PIN1");
            var pin2 = CliConsole.ReadSecret("PIN2");
            var admin = CliConsole.ReadSecret("admin unblock code");
            var type = parse.GetValue(keyType) switch { "p384" => HomeCardKeyType.P384, "rsa3072" => HomeCardKeyType.Rsa3072, _ => HomeCardKeyType.P256 };
            try
            {
                Console.Error.WriteLine($"daiko: creating the home card in {options.Directory} (generating a {parse.GetValue(keyType)} key on the token)…");
                using var card = HomeCard.Initialize(options, type, pin1, pin2, admin);
                var csr = card.CreateCertificateSigningRequest(parse.GetValue(subject)!, pin2);
                var csrPath = Path.Combine(options.Directory, "user.csr");
                File.WriteAllText(csrPath, PemEncoding.WriteString("CERTIFICATE REQUEST", csr) + "\n");
                Console.WriteLine($"home card {card.CardId[..16]} created; certificate request written to {csrPath}");
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or IOException or Net.Pkcs11Interop.Common.Pkcs11Exception)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    private static Command ImportCert()
    {
        var command = new Command("import", "Import the certificate issued for user.csr (PIN2 from stdin).");
        var home = HomeOption();
        var cert = new Option<string>("--cert") { Description = "PEM certificate", Required = true };
        var chain = new Option<string?>("--chain") { Description = "PEM file with the issuing chain" };
        foreach (var o in new Option[] { home, cert, chain }) command.Options.Add(o);
        command.SetAction(parse =>
        {
            try
            {
                using var leaf = X509Certificate2.CreateFromPem(File.ReadAllText(parse.GetValue(cert)!));
                var chainCerts = new X509Certificate2Collection();
                if (parse.GetValue(chain) is { } chainFile) chainCerts.ImportFromPemFile(chainFile);
                var pin2 = CliConsole.ReadSecret("PIN2");
                using var card = HomeCard.Open(CardOptions(parse, home));
                card.ImportCertificate(leaf.RawData, chainCerts.Select(c => c.RawData).ToList(), pin2);
                Console.WriteLine($"certificate for {leaf.Subject} imported into the home card");
                return 0;
            }
            catch (Exception e) when (e is IOException or CryptographicException or InvalidOperationException or Net.Pkcs11Interop.Common.Pkcs11Exception)
            {
                return CliConsole.Fail(e is Net.Pkcs11Interop.Common.Pkcs11Exception p && p.RV == Net.Pkcs11Interop.Common.CKR.CKR_PIN_INCORRECT ? "wrong PIN2" : e.Message);
            }
        });
        return command;
    }

    private static Command ImportP12()
    {
        var command = new Command("import-p12", "Move an existing EC key and certificate (PKCS#12) into the home card's token, replacing its key: the PKCS#12 password, then PIN2, from stdin.");
        var home = HomeOption();
        var p12 = new Option<string>("--p12") { Description = "the PKCS#12 file", Required = true };
        command.Options.Add(home);
        command.Options.Add(p12);
        command.SetAction(parse =>
        {
            var password = CliConsole.ReadSecret("PKCS#12 password");
            var pin2 = CliConsole.ReadSecret("PIN2");
            try
            {
                using var card = HomeCard.Open(CardOptions(parse, home));
                card.ImportPkcs12(File.ReadAllBytes(parse.GetValue(p12)!), password, pin2);
                Console.WriteLine($"key and certificate imported into the home card ({card.CardId[..16]}); delete the PKCS#12 file");
                return 0;
            }
            catch (CryptographicException)
            {
                return CliConsole.Fail("the PKCS#12 file could not be opened: wrong password or not a PKCS#12 file");
            }
            catch (Exception e) when (e is IOException or NotSupportedException or InvalidOperationException or Net.Pkcs11Interop.Common.Pkcs11Exception)
            {
                return CliConsole.Fail(e is Net.Pkcs11Interop.Common.Pkcs11Exception p && p.RV == Net.Pkcs11Interop.Common.CKR.CKR_PIN_INCORRECT ? "wrong PIN2" : e.Message);
            }
        });
        return command;
    }

    private static Command Status()
    {
        var command = new Command("status", "Show the home card's state and PIN tries left.");
        var home = HomeOption();
        var json = new Option<bool>("--json") { Description = "print JSON" };
        command.Options.Add(home);
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            try
            {
                var s = HomeCard.ReadStatus(CardOptions(parse, home));
                var state = Daiko.Home.Handlers.CardGate.StateName(s.State);
                if (parse.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
                    {
                        ["state"] = state,
                        ["pin1_tries_left"] = s.Pin1TriesLeft,
                        ["pin2_tries_left"] = s.Pin2TriesLeft,
                        ["key_type"] = s.KeyType.ToString().ToLowerInvariant(),
                        ["has_certificate"] = s.HasCertificate,
                        ["card_id"] = s.CardId,
                        ["idle_expires_at"] = s.IdleExpiresAt,
                    }));
                }
                else
                {
                    Console.WriteLine($"state {state}; PIN1 tries left {s.Pin1TriesLeft}; PIN2 tries left {s.Pin2TriesLeft}; certificate {(s.HasCertificate ? "imported" : "missing")}");
                }
                return 0;
            }
            catch (FileNotFoundException e)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    private static Command Unblock()
    {
        var command = new Command("unblock", "Unblock a disabled home card: admin code, new PIN1 and new PIN2 from stdin (one a line).");
        var home = HomeOption();
        command.Options.Add(home);
        command.SetAction(parse =>
        {
            var admin = CliConsole.ReadSecret("admin unblock code");
            var pin1 = CliConsole.ReadSecret("new PIN1");
            var pin2 = CliConsole.ReadSecret("new PIN2");
            try
            {
                using var card = HomeCard.Open(CardOptions(parse, home));
                var result = card.Unblock(admin, pin1, pin2);
                if (!result.Accepted) return CliConsole.Fail(result.Message);
                Console.WriteLine(result.Message);
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }
}
