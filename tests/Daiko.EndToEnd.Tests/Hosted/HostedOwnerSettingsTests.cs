using Daiko.TestSupport;
using Daiko.TestSupport.Hosted;

namespace Daiko.EndToEnd.Tests.Hosted;

/// <summary>
/// What each owner sets for their card that every node must honour: where the payment log is mailed (a
/// row in the deployment's database, not a file on one machine), and the admin code's wrong entries,
/// counted under the owner's row lock like PIN tries, so that processes guessing at once get exactly ten.
/// </summary>
[Collection(SecondStream.Name)]
public sealed class HostedOwnerSettingsTests(HostedOwnerSettingsTests.Owners owners) : IClassFixture<HostedOwnerSettingsTests.Owners>
{
    /// <summary>One site with owners hana and ivan (and jody and kira, whom tests add).</summary>
    public sealed class Owners : IAsyncLifetime
    {
        public HostedSite Site { get; } = new();

        public async Task InitializeAsync()
        {
            await Site.InitializeAsync();
            await Site.AddOwnerAsync("hana");
            await Site.AddOwnerAsync("ivan");
        }

        public Task DisposeAsync() => Site.DisposeAsync();
    }

    private HostedSite Site => owners.Site;

    [Fact]
    public async Task MailSettings_AreTheOwnersRow_AndTheNodeMailsEachOwnersLogToThatOwnerOnly()
    {
        var maildir = Path.Combine(Site.Dir.Path, "smtp");
        using var smtp = await SmtpSink.StartAsync(maildir);
        var (_, port) = await Site.StartNodeAsync();
        await HostedSite.Ok(["host", "mail", "set", "--site", Site.Site, "--owner", "hana", "--smtp", $"127.0.0.1:{smtp.Port}", "--from", "daiko@bank.example", "--to", "hana@example.org"]);
        var hanas = await Site.EnrollAsync("hana", "mailer", port);
        var ivans = await Site.EnrollAsync("ivan", "mailer", port);
        await HostedSite.UnlockAsOwnerAsync(hanas, "hana");
        await HostedSite.UnlockAsOwnerAsync(ivans, "ivan");

        var mailed = await DaikoCli.RunAsync(["terminal", "wallet", "mail", "--terminal", hanas], timeout: TimeSpan.FromSeconds(60));
        var unset = await DaikoCli.RunAsync(["terminal", "wallet", "mail", "--terminal", ivans], timeout: TimeSpan.FromSeconds(60));

        Assert.True(mailed.ExitCode == 0, mailed.ToString());
        var message = Assert.Single(smtp.Messages());
        Assert.Contains("hana@example.org", message, StringComparison.Ordinal);
        Assert.True(unset.ExitCode == 1, unset.ToString());
        Assert.Contains("no mail address is configured", unset.StandardError, StringComparison.Ordinal);
        Assert.Single(smtp.Messages());
        Assert.Equal(["hana|hana@example.org"], await Site.QueryAsync("SELECT owner || '|' || mail_to FROM host_mail"));
        Assert.False(Directory.Exists(Path.Combine(Site.Site, "owners", "hana")) && File.Exists(Path.Combine(Site.Site, "owners", "hana", "mail.json")));
    }

    /// <summary>
    /// A hosted owner's banks and markets are declared with <c>host payee</c>, in that owner's schema (another owner's list
    /// stays empty): a running node credits that owner's refills from a bank once it is added, and refuses them again once
    /// it is removed; an unknown owner, or a name no owner can have, is a usage error. Before, a hosted owner had no command to declare one at all.
    /// </summary>
    [Fact]
    public async Task APayeeDeclaredWithHostPayee_IsHonouredByARunningNode_ForThatOwnerOnly_UntilRemoved()
    {
        var (_, port) = await Site.StartNodeAsync();
        var hanas = await Site.EnrollAsync("hana", "payer", port);
        await HostedSite.UnlockAsOwnerAsync(hanas, "hana");
        var bank = new MoneyPeer("bank.hosted", Site.Dir.Path);
        using var bankServer = await KestrelServer.StartAsync(Site.Pki, routes: bank.MapBank);
        Task<CliResult> Refill(string terminal) => DaikoCli.RunAsync(["terminal", "wallet", "refill", "--terminal", terminal, "--bank", $"https://localhost:{bankServer.Port}/", "--amount", "5000"], timeout: TimeSpan.FromSeconds(90));
        string[] Payee(string verb, string owner, params string[] rest) => ["host", "payee", verb, "--site", Site.Site, "--owner", owner, .. rest];

        var before = await Refill(hanas);
        Assert.True(before.ExitCode == 1, before.ToString());
        Assert.Contains("'bank.hosted' is not declared as a bank", before.StandardError, StringComparison.Ordinal);

        var added = await HostedSite.Ok(Payee("add", "hana", "--name", bank.Name, "--role", "bank", "--key", bank.KeyPath));
        Assert.Contains("bank 'bank.hosted' added", added.StandardOutput, StringComparison.Ordinal);
        // Applied by the running node without a restart (a notice, or its poll): within a few seconds.
        var credited = await Refill(hanas);
        for (var tries = 0; credited.ExitCode != 0 && tries < 5; tries++)
        {
            await Task.Delay(1000);
            credited = await Refill(hanas);
        }
        Assert.True(credited.ExitCode == 0, credited.ToString());

        string[] Names(CliResult listed) => System.Text.Json.JsonDocument.Parse(listed.StandardOutput).RootElement.GetProperty("payees").EnumerateArray()
            .Select(p => p.GetProperty("name").GetString() + "/" + p.GetProperty("role").GetString()).ToArray();
        Assert.Equal(["bank.hosted/bank"], Names(await HostedSite.Ok(Payee("list", "hana", "--json"))));
        Assert.Empty(Names(await HostedSite.Ok(Payee("list", "ivan", "--json"))));

        await HostedSite.Ok(Payee("remove", "hana", "--name", bank.Name));
        var again = await DaikoCli.RunAsync(Payee("remove", "hana", "--name", bank.Name));
        Assert.True(again.ExitCode == 1, again.ToString());
        Assert.Contains("no payee is named 'bank.hosted': see 'daiko host payee list'", again.StandardError, StringComparison.Ordinal);
        var refused = await Refill(hanas);
        for (var tries = 0; refused.ExitCode == 0 && tries < 5; tries++)
        {
            await Task.Delay(1000);
            refused = await Refill(hanas);
        }
        Assert.True(refused.ExitCode == 1, refused.ToString());
        Assert.Contains("'bank.hosted' is not declared as a bank", refused.StandardError, StringComparison.Ordinal);

        var nobody = await DaikoCli.RunAsync(Payee("list", "nobody"));
        Assert.True(nobody.ExitCode == 2, nobody.ToString());
        Assert.Contains("no owner named 'nobody'", nobody.StandardError, StringComparison.Ordinal);
        // Not a name an owner can have: a usage error too (it was an unexpected error, exit 70).
        var malformed = await DaikoCli.RunAsync(Payee("list", "Hana_B"));
        Assert.True(malformed.ExitCode == 2, malformed.ToString());
        Assert.Contains("'Hana_B' is not an owner name", malformed.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// The site's market roots are listed, added and removed as a home's are (<c>host trust list|add|remove</c>, each
    /// with <c>--json</c>): a root added again adds nothing, a leaf certificate is refused, and a root removed by the
    /// first characters of its thumbprint leaves the others. Before, a site could only add roots.
    /// </summary>
    [Fact]
    public async Task TheSitesMarketRoots_AreListedAddedAndRemoved_AsAHomesAre()
    {
        string[] Trust(string verb, params string[] rest) => ["host", "trust", verb, "--site", Site.Site, .. rest];
        static string[] Thumbprints(CliResult listed) => System.Text.Json.JsonDocument.Parse(listed.StandardOutput).RootElement.GetProperty("roots")
            .EnumerateArray().Select(r => r.GetProperty("thumbprint").GetString()!).ToArray();
        var initial = Thumbprints(await HostedSite.Ok(Trust("list", "--json")));
        Assert.Single(initial);

        var again = await HostedSite.Ok(Trust("add", "--ca", Site.Pki.RootPath));
        Assert.Contains("already trusted: nothing added", again.StandardOutput, StringComparison.Ordinal);
        var leaf = await DaikoCli.RunAsync(Trust("add", "--ca", Site.Pki.User.CertificatePath));
        Assert.True(leaf.ExitCode == 1, leaf.ToString());
        Assert.Contains("is not a CA certificate", leaf.StandardError, StringComparison.Ordinal);

        using var otherDir = new TempDirectory("daiko-other-ca");
        var other = TestPki.Create(otherDir.Path);
        var added = System.Text.Json.JsonDocument.Parse((await HostedSite.Ok(Trust("add", "--ca", other.RootPath, "--json"))).StandardOutput).RootElement;
        var thumbprint = added.GetProperty("added")[0].GetProperty("thumbprint").GetString()!;
        var both = Thumbprints(await HostedSite.Ok(Trust("list", "--json")));
        Assert.Equal(initial.Append(thumbprint).Order(StringComparer.Ordinal), both.Order(StringComparer.Ordinal));

        await HostedSite.Ok(Trust("remove", "--thumbprint", thumbprint[..8]));
        Assert.Equal(initial, Thumbprints(await HostedSite.Ok(Trust("list", "--json"))));

        // A node's backstop poll is bounded: none at all would leave a lost notice unapplied for good.
        var noPoll = await DaikoCli.RunAsync(["host", "serve", "--site", Site.Site, "--listen", "127.0.0.1:1", "--backstop-poll", "0"]);
        Assert.True(noPoll.ExitCode == 2, noPoll.ToString());
        Assert.Contains("daiko: --backstop-poll takes 1 to 3600 seconds (an hour)", noPoll.StandardError, StringComparison.Ordinal);

        // Migrating again applies nothing new and counts the owners it looked at.
        var migrated = System.Text.Json.JsonDocument.Parse((await HostedSite.Ok(["host", "migrate", "--site", Site.Site, "--json"])).StandardOutput).RootElement;
        Assert.True(migrated.GetProperty("migrated").GetBoolean());
        Assert.Equal((await Site.QueryAsync("SELECT count(*) FROM host_owners")).Single(), migrated.GetProperty("owners").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task DeviceNamesAreChecked_ASecondCodeSaysItReplacesTheFirst_AndAnUnknownDevicesPolicyIsNotShown()
    {
        string[] Add(string name) => ["host", "device", "add", "--site", Site.Site, "--owner", "hana", "--name", name];
        var forged = await DaikoCli.RunAsync(Add("line\nforged"));
        Assert.True(forged.ExitCode == 2, forged.ToString());
        Assert.Contains("daiko: a device name is 1 to 64 characters, without control characters", forged.StandardError, StringComparison.Ordinal);

        var first = await HostedSite.Ok(Add("spare"));
        var second = await HostedSite.Ok(Add("spare"));
        Assert.DoesNotContain("replaces", first.StandardError, StringComparison.Ordinal);
        Assert.Contains("daiko: this replaces the enrollment code given earlier for spare; that one no longer works", second.StandardError, StringComparison.Ordinal);
        var listed = System.Text.Json.JsonDocument.Parse((await HostedSite.Ok(["host", "device", "list", "--site", Site.Site, "--owner", "hana", "--json"])).StandardOutput).RootElement;
        Assert.Equal(["spare"], listed.GetProperty("pending").EnumerateArray().Select(p => p.GetProperty("name").GetString()).Where(n => n == "spare"));

        var ghost = await DaikoCli.RunAsync(["host", "device", "policy", "--site", Site.Site, "--owner", "hana", "--name", "ghost"]);
        Assert.True(ghost.ExitCode == 1, ghost.ToString());
        Assert.Contains("daiko: no device named 'ghost' (see 'daiko host device list')", ghost.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OneOwnerAddedFromFourProcessesAtOnce_IsAddedOnce_AndTheKeyItsRowNamesIsTheOneInTheToken()
    {
        var adds = await Task.WhenAll(Enumerable.Range(0, 4).Select(i =>
            DaikoCli.RunAsync(["host", "owner", "add", "--site", Site.Site, "--owner", "jody", "--subject", HostedSite.SubjectOf("jody")],
                $"1{i}1{i}\n2{i}2{i}\nadmin-code-jody\n", TimeSpan.FromSeconds(120))));

        var everything = string.Join("\n---\n", adds.Select(a => a.ToString()));
        var added = Assert.Single(adds.Select((a, i) => (a, i)), x => x.a.ExitCode == 0);
        Assert.True(adds.Where(a => a.ExitCode != 0).All(a => a.StandardError.Contains("an owner named 'jody' exists already", StringComparison.Ordinal)), everything);
        // The request was signed in the token with the key the row names (another add's provisioning replaced no key):
        // it loads only if its signature verifies with the public key it carries, the row's.
        var request = System.Security.Cryptography.X509Certificates.CertificateRequest.LoadSigningRequestPem(
            await File.ReadAllTextAsync(Path.Combine(Site.Site, "owners", "jody.csr")), System.Security.Cryptography.HashAlgorithmName.SHA256);
        var pem = Path.Combine(Site.Dir.Path, "jody.pem");
        await File.WriteAllTextAsync(pem, Site.Pki.IssueForPublicKey(request.PublicKey, HostedSite.SubjectOf("jody")).ExportCertificatePem());
        // The added one's PIN2 is the row's.
        var imported = System.Text.Json.JsonDocument.Parse((await HostedSite.Ok(["host", "cert", "import", "--site", Site.Site, "--owner", "jody", "--cert", pem, "--json"], $"2{added.i}2{added.i}\n")).StandardOutput).RootElement;
        Assert.Equal(("jody", HostedSite.SubjectOf("jody")), (imported.GetProperty("owner").GetString(), imported.GetProperty("imported").GetString()));
        Assert.Equal(["jody"], await Site.QueryAsync("SELECT name FROM host_owners WHERE name = 'jody'"));
    }

    [Fact]
    public async Task AnOwnerAddedAgainAfterItsRowsWereRemovedByHand_IsRefusedBeforeAnyKeyIsMade_NamingTheSchemaLeftBehind()
    {
        await HostedSite.Ok(["host", "owner", "add", "--site", Site.Site, "--owner", "kira"], "1111\n2222\nadmin-code-kira\n");
        // What an operator removing the owner by hand (there is no `host owner remove`) leaves: the schema, its devices in it.
        await Site.QueryAsync("DELETE FROM host_codes WHERE owner = 'kira'; DELETE FROM host_mail WHERE owner = 'kira'; DELETE FROM host_owners WHERE name = 'kira'");
        var csr = Path.Combine(Site.Site, "owners", "kira.csr");
        File.Delete(csr);

        var again = await DaikoCli.RunAsync(["host", "owner", "add", "--site", Site.Site, "--owner", "kira"], "3333\n4444\nadmin-code-kira\n", TimeSpan.FromSeconds(90));

        Assert.True(again.ExitCode == 1, again.ToString());
        Assert.Contains("the database holds the schema owner_kira already, left from an earlier owner named 'kira'", again.StandardError, StringComparison.Ordinal);
        Assert.Contains("DROP SCHEMA owner_kira CASCADE", again.StandardError, StringComparison.Ordinal);
        Assert.Empty(await Site.QueryAsync("SELECT name FROM host_owners WHERE name = 'kira'"));
        // Refused before provisioning: no request was signed for a new key.
        Assert.False(File.Exists(csr));
    }

    [Fact]
    public async Task WrongAdminCodes_FromTwelveProcessesAtOnce_AreCountedOneAtATime_AndTheTenthBlocksIt()
    {
        var guesses = await Task.WhenAll(Enumerable.Range(0, 12).Select(i =>
            DaikoCli.RunAsync(["host", "card", "unblock", "--site", Site.Site, "--owner", "ivan"], $"wrong-admin-{i}\n1234\n5678\n", TimeSpan.FromSeconds(120))));

        var said = guesses.Select(g => g.StandardError).ToList();
        var everything = string.Join("\n---\n", guesses.Select(g => g.ToString()));
        Assert.All(guesses, g => Assert.True(g.ExitCode == 1, everything));
        for (var left = 1; left <= 9; left++)
        {
            Assert.True(1 == said.Count(s => s.Contains($"wrong admin code: {left} {(left == 1 ? "try" : "tries")} left", StringComparison.Ordinal)), everything);
        }
        Assert.True(1 == said.Count(s => s.Contains("wrong admin code: it is now blocked after 10 wrong entries", StringComparison.Ordinal)), everything);
        Assert.True(2 == said.Count(s => s.Contains("the admin code is blocked after 10 wrong entries", StringComparison.Ordinal)), everything);
        Assert.Equal(["10"], await Site.QueryAsync("SELECT admin_failures FROM host_owners WHERE name = 'ivan'"));
        // Blocked for good: the right admin code no longer unblocks, and is not counted.
        var right = await DaikoCli.RunAsync(["host", "card", "unblock", "--site", Site.Site, "--owner", "ivan"], "admin-code-ivan\n1234\n5678\n", TimeSpan.FromSeconds(60));
        Assert.True(right.ExitCode == 1, right.ToString());
        Assert.Contains("the admin code is blocked", right.StandardError, StringComparison.Ordinal);
        Assert.Equal(["10"], await Site.QueryAsync("SELECT admin_failures FROM host_owners WHERE name = 'ivan'"));
        // hana's admin code is hers: untouched by ivan's guesses.
        Assert.Equal(["0"], await Site.QueryAsync("SELECT admin_failures FROM host_owners WHERE name = 'hana'"));
    }
}
