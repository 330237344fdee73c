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
    /// <summary>--home DIR; unless it is being created, it must already hold a home server.</summary>
    public static Option<string> HomeOption(bool mustExist = true)
    {
        var option = new Option<string>("--home") { Description = mustExist ? "the home server's directory (made by 'home init')" : "the new home server's directory", Required = true, HelpName = "DIR" };
        return mustExist ? option.ExistingHome() : option.NotATerminal();
    }

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
        var cert = new Command("cert", "Import the certificate issued for the home card's key.").WithExamples("daiko home cert import --home ~/daiko-home --cert alice.pem --chain ca.pem");
        cert.Subcommands.Add(ImportCert());
        cert.Subcommands.Add(ImportP12());
        parent.Subcommands.Add(cert);
        var card = new Command("card", "Inspect or unblock the home card.").WithExamples("daiko home card status --home ~/daiko-home");
        card.Subcommands.Add(Status());
        card.Subcommands.Add(Unblock());
        parent.Subcommands.Add(card);
        parent.Subcommands.Add(TrustCommands.Build());
    }

    private static Command Init()
    {
        var command = new Command("init", "Create the home server's directory and its home card: generates the user's key on the token and writes DIR/user.csr.\n" +
            $"Reads PIN1, PIN2 and the admin unblock code (on a terminal each is asked twice). {CliHelp.HomePinRules}\n{CliHelp.SecretsOnStdin}")
            .WithExamples("printf '%s\\n' 1111 2222 admin-code-1 | daiko home init --home ~/daiko-home --subject \"CN=Alice Example\"");
        var home = HomeOption(mustExist: false);
        var module = new Option<string?>("--pkcs11-module") { Description = "PKCS#11 module (default: an embedded SoftHSM2 token store inside DIR)" };
        var label = new Option<string?>("--token-label") { Description = "token label (default daiko-home)" };
        var keyType = new Option<string>("--key-type") { Description = "p256, p384 or rsa3072", DefaultValueFactory = _ => "p256" };
        keyType.AcceptOnlyFromAmong("p256", "p384", "rsa3072");
        var subject = new Option<string>("--subject") { Description = "subject of the CSR, a distinguished name such as \"CN=Alice Example, O=Example\"", DefaultValueFactory = _ => "CN=Daiko User", HelpName = "DN" };
        subject.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is not { } dn) return;
            try
            {
                if (new X500DistinguishedName(dn).RawData.Length > 2) return;
            }
            catch (CryptographicException)
            {
            }
            r.AddError($"--subject takes a distinguished name, e.g. \"CN=Alice Example\" (got '{dn}')");
        });
        home.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } dir && File.Exists(Path.Combine(dir, "card", "card.json")))
            {
                r.AddError($"{dir} holds a home card already: 'home init' makes a new one, so give another directory (or use this one with 'home serve')");
            }
        });
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { home, module, label, keyType, subject, json }) command.Options.Add(o);
        command.SetAction(parse =>
        {
            var options = CardOptions(parse, home, module, label);
            var pin1 = CliConsole.ReadNewSecret("PIN1");
            var pin2 = CliConsole.ReadNewSecret("PIN2");
            var admin = CliConsole.ReadNewSecret("admin unblock code");
            var type = parse.GetValue(keyType) switch { "p384" => HomeCardKeyType.P384, "rsa3072" => HomeCardKeyType.Rsa3072, _ => HomeCardKeyType.P256 };
            // What this command made is taken away again if it fails, so that the same command can simply be run again.
            var madeDirectory = !Directory.Exists(options.Directory);
            var cardDirectory = Path.Combine(options.Directory, "card");
            var madeCard = !Directory.Exists(cardDirectory);
            try
            {
                HomeCard.CheckNewPins(pin1, pin2, admin);
                Console.Error.WriteLine($"daiko: creating the home card in {options.Directory} (generating a {parse.GetValue(keyType)} key on the token)…");
                using var card = HomeCard.Initialize(options, type, pin1, pin2, admin);
                var csr = card.CreateCertificateSigningRequest(parse.GetValue(subject)!, pin2);
                var csrPath = Path.Combine(options.Directory, "user.csr");
                File.WriteAllText(csrPath, PemEncoding.WriteString("CERTIFICATE REQUEST", csr) + "\n");
                CliOutput.Print(parse.GetValue(json), new { card_id = card.CardId, home = options.Directory, key_type = parse.GetValue(keyType), csr = csrPath },
                    $"home card {card.CardId[..16]} created; certificate request written to {csrPath}");
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or IOException or CryptographicException
                or Net.Pkcs11Interop.Common.Pkcs11Exception or DllNotFoundException)
            {
                try
                {
                    if (madeDirectory && Directory.Exists(options.Directory)) Directory.Delete(options.Directory, recursive: true);
                    else if (madeCard && Directory.Exists(cardDirectory)) Directory.Delete(cardDirectory, recursive: true);
                }
                catch (IOException)
                {
                }
                return CliConsole.Fail(e);
            }
        });
        return command;
    }

    private static Command ImportCert()
    {
        var command = new Command("import", "Import the certificate issued for DIR/user.csr into the home card (PIN2 from stdin).")
            .WithExamples("daiko home cert import --home ~/daiko-home --cert alice.pem --chain ca.pem   # PIN2 on stdin");
        var home = HomeOption();
        var cert = new Option<string>("--cert") { Description = "the PEM certificate issued for user.csr", Required = true }.ExistingFile();
        var chain = new Option<string>("--chain") { Description = "PEM file with the issuing chain" }.ExistingFile();
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { home, cert, chain, json }) command.Options.Add(o);
        command.SetAction(parse =>
        {
            try
            {
                var pem = File.ReadAllText(parse.GetValue(cert)!);
                if (pem.Contains("-----BEGIN CERTIFICATE REQUEST-----", StringComparison.Ordinal))
                {
                    return CliConsole.Fail($"{parse.GetValue(cert)} is the certificate request (the CSR): give it to your CA, then import the certificate the CA issues for it");
                }
                using var leaf = X509Certificate2.CreateFromPem(pem);
                var chainCerts = new X509Certificate2Collection();
                if (parse.GetValue(chain) is { } chainFile) chainCerts.ImportFromPemFile(chainFile);
                var pin2 = CliConsole.ReadSecret("PIN2");
                using var card = HomeCard.Open(CardOptions(parse, home));
                card.ImportCertificate(leaf.RawData, chainCerts.Select(c => c.RawData).ToList(), pin2);
                CliOutput.Print(parse.GetValue(json), new { imported = leaf.Subject, thumbprint = leaf.Thumbprint, not_after = leaf.NotAfter.ToUniversalTime(), chain = chainCerts.Count },
                    $"certificate for {leaf.Subject} imported into the home card");
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
        var command = new Command("import-p12", "Move an existing EC key and certificate (PKCS#12) into the home card's token, replacing its key: the PKCS#12 password, then PIN2, from stdin.")
            .WithExamples("daiko home cert import-p12 --home ~/daiko-home --p12 alice.p12   # password and PIN2 on stdin");
        var home = HomeOption();
        var p12 = new Option<string>("--p12") { Description = "the PKCS#12 file", Required = true }.ExistingFile();
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { home, p12, json }) command.Options.Add(o);
        command.SetAction(parse =>
        {
            var password = CliConsole.ReadSecret("PKCS#12 password");
            var pin2 = CliConsole.ReadSecret("PIN2");
            try
            {
                using var card = HomeCard.Open(CardOptions(parse, home));
                var bytes = File.ReadAllBytes(parse.GetValue(p12)!);
                card.ImportPkcs12(bytes, password, pin2);
                // What was imported, read from the file's certificate (its key is in the token now; this copy is dropped at once).
                using var imported = X509CertificateLoader.LoadPkcs12(bytes, password, X509KeyStorageFlags.EphemeralKeySet);
                CliOutput.Print(parse.GetValue(json), new { imported = imported.Subject, thumbprint = imported.Thumbprint, not_after = imported.NotAfter.ToUniversalTime(), card_id = card.CardId },
                    $"key and certificate imported into the home card ({card.CardId[..16]}); delete the PKCS#12 file");
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
        var command = new Command("status", "Show the home card's state and PIN tries left.")
            .WithExamples("daiko home card status --home ~/daiko-home --json");
        var home = HomeOption();
        var json = CliOutput.JsonOption();
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
        var command = new Command("unblock", $"Unblock a disabled home card: the admin unblock code, then a new PIN1 and a new PIN2 (on a terminal each new PIN is asked twice). {CliHelp.HomePinRules}")
            .WithExamples("printf '%s\\n' admin-code-1 5555 6666 | daiko home card unblock --home ~/daiko-home");
        var home = HomeOption();
        var json = CliOutput.JsonOption();
        command.Options.Add(home);
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            var admin = CliConsole.ReadSecret("admin unblock code");
            var pin1 = CliConsole.ReadNewSecret("new PIN1");
            var pin2 = CliConsole.ReadNewSecret("new PIN2");
            try
            {
                using var card = HomeCard.Open(CardOptions(parse, home));
                var result = card.Unblock(admin, pin1, pin2);
                if (!result.Accepted) return CliConsole.Fail(result.Message);
                CliOutput.Print(parse.GetValue(json), new { unblocked = true, message = result.Message }, result.Message);
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException)
            {
                return CliConsole.Fail(e);
            }
        });
        return command;
    }
}
