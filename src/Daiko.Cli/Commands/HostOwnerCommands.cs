using System.CommandLine;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Daiko.Cards;
using Daiko.Cards.Site;
using Daiko.Host;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko host owner add|list</c>, <c>host cert import</c>, <c>host card status|unblock</c>.</summary>
internal static class HostOwnerCommands
{
    public static Command Owner()
    {
        var owner = new Command("owner", "Add and list the deployment's owners (each with their own home card in the site token).")
            .WithExamples("daiko host owner list --site /etc/daiko/site");
        var add = new Command("add", "Add an owner: PIN1, PIN2 and the admin code from stdin (one a line); generates the owner's keys in the site token and writes DIR/owners/NAME.csr.")
            .WithExamples("printf '%s\\n' \"$PIN1\" \"$PIN2\" \"$ADMIN\" | daiko host owner add --site /etc/daiko/site --owner alice --subject 'CN=Alice'");
        var site = HostCommands.SiteOption();
        var name = HostCommands.OwnerOption();
        var subject = new Option<string?>("--subject") { Description = "the subject of the owner's certificate request (default CN=NAME)", HelpName = "DN" };
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { site, name, subject, json }) add.Options.Add(o);
        add.SetAction((parse, ct) => HostCommands.WithSiteAsync(parse.GetValue(site)!, async (hosted, database) =>
        {
            var ownerName = HostSite.RequireOwnerName(parse.GetValue(name)!);
            var pin1 = CliConsole.ReadNewSecret("PIN1");
            var pin2 = CliConsole.ReadNewSecret("PIN2");
            var admin = CliConsole.ReadNewSecret("admin code");
            await database.MigrateAsync(ct);
            // Checked before any key is made: provisioning replaces objects labelled for this owner. Under the name's lock,
            // so that another add of the same name waits here and then finds it taken.
            await using var held = await database.HoldOwnerNameAsync(ownerName, ct);
            if (database.Read(ownerName) is not null) return CliConsole.Fail($"an owner named '{ownerName}' exists already");
            // Before any key is made, too: the add would be refused once the keys were in the token.
            if (await database.SchemaExistsAsync(ownerName, ct)) return CliConsole.Fail(SiteDatabase.SchemaLeftOver(ownerName));
            using var token = hosted.OpenToken();
            var row = HostedCard.Provision(token, ownerName, pin1, pin2, admin);
            if (!await database.AddOwnerAsync(row, ct)) return CliConsole.Fail($"an owner named '{ownerName}' exists already");
            var csr = token.CreateCertificateSigningRequest(ownerName, row.TlsKeyInfo, parse.GetValue(subject) ?? $"CN={ownerName}");
            var csrPath = Path.Combine(hosted.Directory, "owners", ownerName + ".csr");
            Directory.CreateDirectory(Path.GetDirectoryName(csrPath)!);
            File.WriteAllText(csrPath, System.Security.Cryptography.PemEncoding.WriteString("CERTIFICATE REQUEST", csr) + "\n");
            CliOutput.Print(parse.GetValue(json), new { owner = ownerName, csr = csrPath }, $"owner '{ownerName}' added; certificate request in {csrPath}");
            return 0;
        }));
        owner.Subcommands.Add(add);
        var list = new Command("list", "List the owners.").WithExamples("daiko host owner list --site /etc/daiko/site --json");
        var listSite = HostCommands.SiteOption();
        var listJson = CliOutput.JsonOption();
        list.Options.Add(listSite);
        list.Options.Add(listJson);
        list.SetAction((parse, ct) => HostCommands.WithSiteAsync(parse.GetValue(listSite)!, async (_, database) =>
        {
            var owners = await database.OwnersAsync(ct);
            if (parse.GetValue(listJson)) Console.WriteLine(JsonSerializer.Serialize(new { owners }));
            else foreach (var o in owners) Console.WriteLine(o);
            return 0;
        }));
        owner.Subcommands.Add(list);
        return owner;
    }

    public static Command Mail()
    {
        const string example = "daiko host mail set --site /etc/daiko/site --owner alice --smtp smtp.example:25 --from daiko@bank.example --to alice@example.org";
        var mail = new Command("mail", "Where an owner's payment log is mailed (kept in the database: every node reads it).").WithExamples(example);
        var set = new Command("set", "Set the SMTP server and the addresses an owner's payment log is mailed from and to.").WithExamples(example);
        var site = HostCommands.SiteOption();
        var name = HostCommands.OwnerOption();
        set.Options.Add(site);
        set.Options.Add(name);
        var options = new MailOptions(set);
        set.SetAction((parse, ct) => HostCommands.WithSiteAsync(parse.GetValue(site)!, async (_, database) =>
        {
            var owner = HostSite.RequireOwnerName(parse.GetValue(name)!);
            await database.MigrateAsync(ct);
            if (database.Read(owner) is null) return CliConsole.Fail($"no owner named '{owner}' in this deployment");
            var settings = options.Settings(parse);
            await database.SetMailAsync(owner, settings, ct);
            options.Print(parse, settings, "every node reads this at its next mail");
            return 0;
        }));
        mail.Subcommands.Add(set);
        return mail;
    }

    public static Command CertImport()
    {
        var cert = new Command("cert", "The owners' certificates.")
            .WithExamples("echo \"$PIN2\" | daiko host cert import --site /etc/daiko/site --owner alice --cert alice.pem");
        var import = new Command("import", "Import the certificate issued for an owner's request (that owner's PIN2 on stdin).")
            .WithExamples("echo \"$PIN2\" | daiko host cert import --site /etc/daiko/site --owner alice --cert alice.pem");
        var site = HostCommands.SiteOption();
        var name = HostCommands.OwnerOption();
        var pem = new Option<string>("--cert") { Description = "the owner's certificate (PEM)", Required = true, HelpName = "PEM" };
        var chain = new Option<string?>("--chain") { Description = "intermediate certificates (PEM)", HelpName = "PEM" };
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { site, name, pem, chain, json }) import.Options.Add(o);
        import.SetAction((parse, ct) => HostCommands.WithSiteAsync(parse.GetValue(site)!, (hosted, database) =>
        {
            var pin2 = CliConsole.ReadSecret("PIN2");
            using var token = hosted.OpenToken();
            var card = new HostedCard(HostSite.RequireOwnerName(parse.GetValue(name)!), token, database);
            var leaves = new X509Certificate2Collection();
            leaves.ImportFromPemFile(parse.GetValue(pem)!);
            if (leaves.Count == 0) throw new ArgumentException($"{parse.GetValue(pem)} holds no certificate");
            var leaf = leaves[0];
            var intermediates = new X509Certificate2Collection();
            if (parse.GetValue(chain) is { } chainPath) intermediates.ImportFromPemFile(chainPath);
            card.ImportCertificate(leaf.RawData, intermediates.Select(c => c.RawData).ToList(), pin2);
            CliOutput.Print(parse.GetValue(json), new { owner = card.Owner, imported = leaf.Subject, thumbprint = leaf.Thumbprint, not_after = leaf.NotAfter.ToUniversalTime(), chain = intermediates.Count },
                $"certificate imported for '{card.Owner}': {leaf.Subject}");
            return Task.FromResult(0);
        }));
        cert.Subcommands.Add(import);
        return cert;
    }

    public static Command Card()
    {
        var card = new Command("card", "An owner's home card in the site token.")
            .WithExamples("daiko host card status --site /etc/daiko/site --owner alice");
        var status = new Command("status", "The owner's card state and tries left.").WithExamples("daiko host card status --site /etc/daiko/site --owner alice --json");
        var site = HostCommands.SiteOption();
        var name = HostCommands.OwnerOption();
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { site, name, json }) status.Options.Add(o);
        status.SetAction((parse, ct) => HostCommands.WithSiteAsync(parse.GetValue(site)!, (_, database) =>
        {
            var owner = HostSite.RequireOwnerName(parse.GetValue(name)!);
            var row = database.Read(owner) ?? throw new ArgumentException($"no owner named '{owner}' in this deployment");
            var state = Daiko.Home.Handlers.CardGate.StateName(row.Disabled ? HomeCardState.Disabled : row.State);
            var pin1 = Math.Max(0, HomeCardOptions.MaxTries - row.Pin1Failures);
            var pin2 = Math.Max(0, HomeCardOptions.MaxTries - row.Pin2Failures);
            CliOutput.Print(parse.GetValue(json), new { owner, state, pin1_tries_left = pin1, pin2_tries_left = pin2, has_certificate = row.ChainPem is not null },
                $"state {state}; PIN1 tries left {pin1}; PIN2 tries left {pin2}; certificate {(row.ChainPem is null ? "missing" : "imported")}");
            return Task.FromResult(0);
        }));
        card.Subcommands.Add(status);
        var unblock = new Command("unblock", "Unblock the owner's card: admin code, new PIN1, new PIN2 from stdin (one a line).")
            .WithExamples("printf '%s\\n' \"$ADMIN\" \"$PIN1\" \"$PIN2\" | daiko host card unblock --site /etc/daiko/site --owner alice");
        var unblockSite = HostCommands.SiteOption();
        var unblockName = HostCommands.OwnerOption();
        var unblockJson = CliOutput.JsonOption();
        foreach (var o in new Option[] { unblockSite, unblockName, unblockJson }) unblock.Options.Add(o);
        unblock.SetAction((parse, ct) => HostCommands.WithSiteAsync(parse.GetValue(unblockSite)!, (hosted, database) =>
        {
            var admin = CliConsole.ReadSecret("admin code");
            var pin1 = CliConsole.ReadNewSecret("new PIN1");
            var pin2 = CliConsole.ReadNewSecret("new PIN2");
            using var token = hosted.OpenToken();
            var result = new HostedCard(HostSite.RequireOwnerName(parse.GetValue(unblockName)!), token, database).Unblock(admin, pin1, pin2);
            if (!result.Accepted) return Task.FromResult(CliConsole.Fail(result.Message));
            CliOutput.Print(parse.GetValue(unblockJson), new { owner = parse.GetValue(unblockName), unblocked = true, message = result.Message }, result.Message);
            return Task.FromResult(0);
        }));
        card.Subcommands.Add(unblock);
        return card;
    }
}
