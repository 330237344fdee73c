using System.CommandLine;
using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards;
using Daiko.Cards.Site;
using Daiko.Home.Devices;
using Daiko.Home.Trust;
using Daiko.Home.Web;
using Daiko.Host;
using Daiko.Protocol;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko host …</c>: a hosted deployment (many owners, several stateless nodes, PostgreSQL, one site token).</summary>
internal static class HostCommands
{
    public static Command Build()
    {
        var host = new Command("host", "Run and administer a hosted deployment: many owners, several stateless nodes over PostgreSQL and one HSM token.")
            .WithExamples("daiko host init --site /etc/daiko/site --postgres-file /etc/daiko/postgres.conn", "daiko host serve --site /etc/daiko/site --listen 10.0.0.5:7443");
        host.Subcommands.Add(Init());
        host.Subcommands.Add(Migrate());
        host.Subcommands.Add(HostOwnerCommands.Owner());
        host.Subcommands.Add(HostOwnerCommands.CertImport());
        host.Subcommands.Add(HostOwnerCommands.Card());
        host.Subcommands.Add(HostOwnerCommands.Mail());
        host.Subcommands.Add(TrustCommands.ForSite());
        host.Subcommands.Add(HostDeviceCommands.Device());
        host.Subcommands.Add(PayeeCommands.ForHostedOwner());
        host.Subcommands.Add(Serve());
        return host;
    }

    /// <summary>--site DIR; unless it is being made (<c>host init</c>), it must hold a site already.</summary>
    public static Option<string> SiteOption(bool mustExist = true)
    {
        var option = new Option<string>("--site") { Description = "the site directory (the same on every node)", Required = true, HelpName = "DIR" };
        if (mustExist)
        {
            option.Validators.Add(r =>
            {
                if (r.GetValueOrDefault<string>() is { } dir && !File.Exists(Path.Combine(dir, "site.json")))
                {
                    r.AddError($"no hosted site in {dir}: give the directory made by 'daiko host init --site DIR'");
                }
            });
        }
        return option;
    }

    public static Option<string> OwnerOption() => new("--owner") { Description = "the owner's name", Required = true, HelpName = "NAME" };

    /// <summary>Runs <paramref name="work"/> on the opened site and its database; expected failures become one sentence (exit 1).</summary>
    public static async Task<int> WithSiteAsync(string directory, Func<HostSite, SiteDatabase, Task<int>> work)
    {
        try
        {
            var site = HostSite.Open(directory);
            await using var source = site.OpenDataSource(maxPool: 4);
            return await work(site, new SiteDatabase(source));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or WrongPinException or CardNotReadyException or System.Security.Cryptography.CryptographicException)
        {
            return CliConsole.Fail(e.Message);
        }
    }

    private static Command Init()
    {
        var command = new Command("init", "Create a hosted site: the site directory, the site token (SoftHSM2 in DIR/hsm unless --pkcs11-module) and the database schema.")
            .WithExamples("daiko host init --site /etc/daiko/site --postgres-file /etc/daiko/postgres.conn");
        var site = SiteOption(mustExist: false);
        var postgres = new Option<FileInfo>("--postgres-file") { Description = "a file holding the Npgsql connection string (copied into DIR/postgres, 0600)", Required = true, HelpName = "FILE" };
        var module = new Option<string?>("--pkcs11-module") { Description = "the HSM's PKCS#11 module (default: SoftHSM2 with its token store in DIR/hsm)", HelpName = "SO" };
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { site, postgres, module, json }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            var file = parse.GetValue(postgres)!;
            if (!file.Exists) return CliConsole.Fail($"--postgres-file {file.FullName} does not exist");
            try
            {
                var created = HostSite.Create(parse.GetValue(site)!, File.ReadAllText(file.FullName), parse.GetValue(module));
                using (created.CreateToken()) { }
                await using var source = created.OpenDataSource(maxPool: 2);
                await new SiteDatabase(source).MigrateAsync(ct);
                CliOutput.Print(parse.GetValue(json), new { site = created.Directory, token = created.Config.TokenLabel, migrated = true },
                    $"hosted site created in {created.Directory} (token '{created.Config.TokenLabel}', schema migrated)");
                return 0;
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or Npgsql.NpgsqlException)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    private static Command Migrate()
    {
        var command = new Command("migrate", "Apply the database migrations not yet applied (the site's and every owner's); run before starting nodes of a new version.")
            .WithExamples("daiko host migrate --site /etc/daiko/site");
        var site = SiteOption();
        var json = CliOutput.JsonOption();
        command.Options.Add(site);
        command.Options.Add(json);
        command.SetAction((parse, ct) => WithSiteAsync(parse.GetValue(site)!, async (_, database) =>
        {
            await database.MigrateAsync(ct);
            var owners = (await database.OwnersAsync(ct)).Count;
            CliOutput.Print(parse.GetValue(json), new { migrated = true, owners }, $"migrated the site and {owners} owner(s)");
            return 0;
        }));
        return command;
    }

    /// <summary>Where a node's console gets TLS (named when plain HTTP beyond loopback is refused).</summary>
    private const string NodeConsoleTls = "--console-cert PEM --console-key PEM";

    private static Command Serve()
    {
        var command = new Command("serve", "Run one node of the hosted deployment (run one per machine, behind a TCP load balancer); SIGTERM stops it, and its console with it.")
            .WithExamples("daiko host serve --site /etc/daiko/site --listen 10.0.0.5:7443",
                "daiko host serve --site /etc/daiko/site --listen 10.0.0.5:7443 --console 127.0.0.1:9000");
        var site = SiteOption();
        var listen = new Option<string>("--listen") { Description = "where terminals (or the load balancer) connect", Required = true, HelpName = "HOST:PORT" }.HostPort();
        var console = new ConsoleOptions("where the node's /healthz (200 when the site's PostgreSQL and the site token answer, else 503 naming which) and /metrics (Prometheus text) listen; "
            + "no owner console on hosted nodes yet (every other path is 404); beyond loopback it needs TLS", "the console's TLS certificate (PEM), needed beyond loopback");
        var allowPrivate = new Option<bool>("--allow-private-markets") { Description = "let every device reach markets on loopback and private addresses (labs and tests)" };
        var proxyProtocol = new Option<bool>("--proxy-protocol") { Description = "every connection starts with a PROXY protocol v2 header (HAProxy send-proxy-v2): the terminals' real addresses feed the per-source limits" };
        var proxyFrom = CliChecks.ProxyFromOption(proxyProtocol);
        var ownerIdle = new Option<int>("--owner-idle")
        {
            Description = "unload an owner from this node once the last of their devices' channels to it has been closed this many seconds (0, the default: keep every owner it loaded): "
                + "their polls, reports and appliance readings stop here and their cached tickets are wiped; their next device loads them again, without a PIN (all their state is in PostgreSQL). "
                + "A node that meets many owners wants it (600 is a start)",
            HelpName = "SECONDS",
        };
        // (A value that is no number is System.CommandLine's own parse error; this sees numbers only.)
        ownerIdle.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && int.TryParse(r.Tokens[^1].Value, out var seconds) && seconds is < 0 or > 86_400) r.AddError("--owner-idle takes 0 (never) or 1 to 86400 seconds (a day)");
        });
        var backstop = new Option<int>("--backstop-poll")
        {
            Description = "how often the node reads each loaded owner's changes (revocations, card and session states, payees) when no change notice came (default 5): "
                + "a change is applied at once through PostgreSQL's notices; this bounds how late one is applied should a notice be lost. Many nodes may want it longer (fewer reads)",
            HelpName = "SECONDS",
            DefaultValueFactory = _ => 5,
        };
        backstop.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && int.TryParse(r.Tokens[^1].Value, out var seconds) && seconds is < 1 or > 3_600) r.AddError("--backstop-poll takes 1 to 3600 seconds (an hour)");
        });
        Option[] options = [site, listen, .. console.All, allowPrivate, proxyProtocol, proxyFrom, ownerIdle, backstop];
        foreach (var o in options) command.Options.Add(o);
        command.Validators.Add(result =>
        {
            CliChecks.CheckProxyFrom(result, proxyProtocol, proxyFrom);
            console.Check(result, tlsOnlyFrom: NodeConsoleTls);
        });
        command.SetAction(async (parse, ct) =>
        {
            var where = parse.GetValue(listen)!;
            var consoleText = parse.GetValue(console.Address);
            var consoleEndpoint = consoleText is null ? null : HomeServerCommands.ParseEndpoint(consoleText, "--console");
            X509Certificate2? certificate;
            try
            {
                certificate = ConsoleOptions.Load(parse.GetValue(console.Certificate), parse.GetValue(console.Key));
            }
            catch (Exception e) when (e is IOException or System.Security.Cryptography.CryptographicException)
            {
                return CliConsole.Fail($"cannot read the console's certificate: {e.Message}");
            }
            using var log = new StderrLog();
            HostNode node;
            try
            {
                node = await HostNode.StartAsync(new HostNodeOptions(parse.GetValue(site)!, HomeServerCommands.ParseEndpoint(where))
                {
                    LoggerFactory = log,
                    AllowPrivateMarkets = parse.GetValue(allowPrivate),
                    ProxyProtocol = parse.GetValue(proxyProtocol),
                    ProxyFrom = CliChecks.ProxySources(parse.GetValue(proxyFrom)),
                    OwnerIdle = TimeSpan.FromSeconds(parse.GetValue(ownerIdle)),
                    Poll = TimeSpan.FromSeconds(parse.GetValue(backstop)),
                }, ct);
            }
            catch (System.Net.Sockets.SocketException e)
            {
                return CliConsole.Fail(HomeServerCommands.ListenProblem(where, e));
            }
            catch (HomeIdentityMissingException e)
            {
                // A site directory without its identity is the wrong --site (or an incomplete copy of it): bad usage.
                CliConsole.Fail(e.Message);
                return CliConsole.Usage;
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or Npgsql.NpgsqlException or Net.Pkcs11Interop.Common.Pkcs11Exception)
            {
                return CliConsole.Fail($"the node cannot start: {e.Message}");
            }
            NodeWeb? web = null;
            try
            {
                if (consoleEndpoint is not null)
                {
                    web = await NodeWeb.StartAsync(new WebListen(Path.GetFullPath(parse.GetValue(site)!), consoleEndpoint, certificate, NodeConsoleTls),
                    [
                        new HealthProbe("database", node.CheckDatabaseAsync),
                        new HealthProbe("token", _ => Task.Run(node.CheckToken)),
                    ]);
                }
            }
            catch (Exception e) when (e is ArgumentException or IOException)
            {
                await node.DisposeAsync();
                return CliConsole.Fail(e is IOException { InnerException: System.Net.Sockets.SocketException se } ? HomeServerCommands.ListenProblem(consoleText!, se) : e.Message);
            }
            if (parse.GetValue(proxyProtocol)) log.CreateLogger("Daiko.Serve").ProxyProtocolTrusted(CliChecks.ProxySources(parse.GetValue(proxyFrom)).ToString());
            Console.WriteLine($"hosted node listening on {node.LocalEndPoint} (pid {Environment.ProcessId})");
            if (web is not null) Console.WriteLine($"console on {web.BaseUrl}/ (/healthz and /metrics; the owner's console is served by 'daiko home serve' only, for now)");
            var stop = new TaskCompletionSource();
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
            await Task.WhenAny(stop.Task, Task.Delay(Timeout.Infinite, ct));
            Console.Error.WriteLine("daiko: hosted node stopping; owners' sessions stay in the database for the other nodes");
            if (web is not null) await web.DisposeAsync();
            await node.DisposeAsync();
            return 0;
        });
        return command;
    }
}
