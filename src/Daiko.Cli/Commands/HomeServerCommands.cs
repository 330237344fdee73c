using System.CommandLine;
using System.Net;
using System.Text.Json;
using Daiko.Cards;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Home.Trust;
using Daiko.Home.Storage;
using Daiko.Protocol;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko home serve</c> and <c>daiko home device …</c>.</summary>
internal static class HomeServerCommands
{
    public static void AddTo(Command parent)
    {
        parent.Subcommands.Add(Serve());
        parent.Subcommands.Add(HomeServe.ConsoleLink());
        parent.Subcommands.Add(HomeMailCommands.Mail());
        parent.Subcommands.Add(PayeeCommands.ForHome());
        var device = new Command("device", "Enroll, list and revoke terminals, and set what each may do.").WithExamples("daiko home device add --home ~/daiko-home --name phone",
            "daiko home device list --home ~/daiko-home", "daiko home device policy --home ~/daiko-home --name phone --markets '*.shop.example' --spend-limit 5000");
        device.Subcommands.Add(Add());
        device.Subcommands.Add(List());
        device.Subcommands.Add(Revoke());
        device.Subcommands.Add(DevicePolicyCommands.Policy());
        parent.Subcommands.Add(device);
        var appliance = new Command("appliance", "Home appliances the home server controls for terminals.").WithExamples("daiko home appliance add --home ~/daiko-home --name heater --url http://192.168.1.20/");
        var add = new Command("add", "Register an appliance on the home network (HTTP+JSON: GET /state, POST /command).").WithExamples("daiko home appliance add --home ~/daiko-home --name heater --url http://192.168.1.20/");
        var home = HomeCardCommands.HomeOption();
        var name = new Option<string>("--name") { Description = "the appliance's name", Required = true };
        var url = new Option<string>("--url") { Description = "its base URL on the home network", Required = true, HelpName = "URL" };
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { home, name, url, json }) add.Options.Add(o);
        add.SetAction(async (parse, ct) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var endpoint)) return CliConsole.Fail("--url must be an absolute http(s) URL");
            try
            {
                using var gateway = new Daiko.Home.Appliances.ApplianceGateway(HomeStore.ForHome(parse.GetValue(home)!).Appliances);
                await gateway.RegisterAsync(new Daiko.Home.Appliances.Appliance(parse.GetValue(name)!, endpoint), ct);
                CliOutput.Print(parse.GetValue(json), new { registered = parse.GetValue(name), url = endpoint.ToString() }, $"appliance '{parse.GetValue(name)}' registered");
                return 0;
            }
            catch (ArgumentException e)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        appliance.Subcommands.Add(add);
        parent.Subcommands.Add(appliance);
    }

    /// <summary>A local address to listen on; a mistake is a <see cref="CliUsageException"/> (exit 2).</summary>
    public static IPEndPoint ParseEndpoint(string text, string option = "--listen")
    {
        if (CliChecks.HostPortProblem(text) is { } problem) throw new CliUsageException($"{option} {problem}");
        var colon = text.LastIndexOf(':');
        var port = int.Parse(text[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        var host = text[..colon].Trim('[', ']');
        if (host is "localhost") return new IPEndPoint(IPAddress.Loopback, port);
        if (!IPAddress.TryParse(host, out var address)) throw new CliUsageException($"{option} takes a local IP address and port to listen on, e.g. 127.0.0.1:{port} (got '{text}')");
        return new IPEndPoint(address, port);
    }

    /// <summary>"cannot listen on …" as one sentence: the address in use, or not this machine's.</summary>
    public static string ListenProblem(string where, System.Net.Sockets.SocketException e) => e.SocketErrorCode switch
    {
        System.Net.Sockets.SocketError.AddressAlreadyInUse => $"cannot listen on {where}: the address is already in use (another server is running there; pick another port)",
        System.Net.Sockets.SocketError.AddressNotAvailable => $"cannot listen on {where}: that address is not one of this machine's",
        System.Net.Sockets.SocketError.AccessDenied => $"cannot listen on {where}: permission denied (ports below 1024 need privileges)",
        _ => $"cannot listen on {where}: {e.Message}",
    };

    private static Command Serve()
    {
        var command = new Command("serve", "Run the home server: terminals connect here; the home card stays locked until a terminal gives PIN1 and PIN2. DIR/home.json sets listen addresses, limits and new-device defaults; SIGHUP reloads it and the trust roots; SIGTERM stops within 5 s.")
            .WithExamples("daiko home serve --home ~/daiko-home --listen 0.0.0.0:7443 --console 127.0.0.1:8080");
        var home = HomeCardCommands.HomeOption();
        var listen = new Option<string>("--listen") { Description = "where terminals connect (default: home.json \"listen\", else 127.0.0.1:7443)" }.HostPort();
        var postgres = new Option<string?>("--purse-postgres") { Description = "keep the purse in PostgreSQL (Npgsql connection string; visible to other users on the command line: prefer --purse-postgres-file or DAIKO_PURSE_POSTGRES)", HelpName = "CONNECTION" };
        var postgresFile = new Option<FileInfo?>("--purse-postgres-file") { Description = "keep the purse in PostgreSQL: the file holds the Npgsql connection string", HelpName = "FILE" };
        var console = new ConsoleOptions("where the owner's console, /healthz and /metrics listen (--web is an alias); beyond loopback it needs TLS",
            "the console's TLS certificate (PEM; default beyond loopback: the home identity's)", "--web");
        var allowPrivate = new Option<bool>("--allow-private-markets")
        {
            Description = "let every device reach markets on loopback and private addresses (labs and tests; otherwise allow them per device with 'home device policy --markets')",
        };
        var proxyProtocol = new Option<bool>("--proxy-protocol")
        {
            Description = "terminals come through a load balancer that sends a PROXY protocol v2 header (HAProxy's send-proxy-v2): its client address counts for the per-address limits; a connection without one is refused",
        };
        var fetchIntermediates = new Option<bool>("--fetch-missing-intermediates")
        {
            Description = "when a market's chain lacks an intermediate, fetch it from the certificate's http AIA URL (public addresses only, 2 s, 64 KiB, cached, logged); by default nothing is fetched during certificate checks",
        };
        var allPostgresFile = new Option<FileInfo?>("--postgres-file")
        {
            Description = "keep all of this home's state (devices, sessions, policies, audit, purse, PIM, appliances) in PostgreSQL from now on: FILE holds the Npgsql connection string; it is copied to DIR/postgres (0600), which every home command then uses",
            HelpName = "FILE",
        };
        var auditDays = new Option<int>("--audit-days")
        {
            Description = "how many days the audit log keeps a line (365 by default); older lines are removed hourly, and the removal is itself audited",
            HelpName = "N",
            DefaultValueFactory = _ => Daiko.Home.Storage.AuditRetention.Default.Days,
        };
        // (A value that is no number is System.CommandLine's own parse error; these see numbers only.)
        auditDays.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && int.TryParse(r.Tokens[^1].Value, out var days) && days is < 1 or > Daiko.Home.Storage.AuditRetention.MostDays)
                r.AddError($"--audit-days takes 1 to {Daiko.Home.Storage.AuditRetention.MostDays} (a hundred years)");
        });
        var auditMaxLines = new Option<long>("--audit-max-lines")
        {
            Description = "the most lines the audit log keeps (1000000 by default, about 100 MB): the oldest go first",
            HelpName = "N",
            DefaultValueFactory = _ => Daiko.Home.Storage.AuditRetention.Default.MaxLines,
        };
        auditMaxLines.Validators.Add(r => { if (r.Tokens.Count > 0 && long.TryParse(r.Tokens[^1].Value, out var lines) && lines < 100) r.AddError("--audit-max-lines must be at least 100"); });
        var logFormat = new Option<string?>("--log-format") { Description = "how the log on stderr is written: plain (default) or json (one object a line; home.json \"log_format\")", HelpName = "FORMAT" };
        logFormat.AcceptOnlyFromAmong("plain", "json");
        var proxyFrom = CliChecks.ProxyFromOption(proxyProtocol);
        Option[] options = [home, listen, .. console.All, postgres, postgresFile, allPostgresFile, allowPrivate, proxyProtocol, proxyFrom, fetchIntermediates, auditDays, auditMaxLines, logFormat];
        foreach (var o in options) command.Options.Add(o);
        command.Validators.Add(result =>
        {
            CliChecks.CheckProxyFrom(result, proxyProtocol, proxyFrom);
            console.Check(result);
        });
        command.SetAction((parse, ct) =>
        {
            if (parse.GetValue(allPostgresFile) is { } file && KeepAllInPostgres(parse.GetValue(home)!, file) is { } problem) return Task.FromResult(CliConsole.Fail(problem));
            return HomeServe.RunAsync(new HomeServe.Arguments(parse.GetValue(home)!, parse.GetValue(listen), parse.GetValue(console.Address),
                parse.GetValue(console.Certificate), parse.GetValue(console.Key), PurseConnectionString(parse.GetValue(postgres), parse.GetValue(postgresFile)), parse.GetValue(allowPrivate), parse.GetValue(proxyProtocol), parse.GetValue(fetchIntermediates), parse.GetValue(logFormat))
            {
                ProxyFrom = CliChecks.ProxySources(parse.GetValue(proxyFrom)),
                AuditRetention = new Daiko.Home.Storage.AuditRetention(parse.GetValue(auditDays), parse.GetValue(auditMaxLines)),
            }, ct);
        });
        return command;
    }

    /// <summary>Records that this home's state lives in PostgreSQL (DIR/postgres, 0600); null when done, else why not.</summary>
    private static string? KeepAllInPostgres(string home, FileInfo file)
    {
        if (!Directory.Exists(home)) return $"{home} holds no home: run 'daiko home init --home {home}' first";
        string connection;
        try
        {
            connection = File.ReadAllText(file.FullName).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"cannot read the PostgreSQL connection file {file.FullName}: {e.Message}";
        }
        if (connection.Length == 0) return $"{file.FullName} holds no PostgreSQL connection string";
        // The move is recorded only once the database answers and holds the home's tables: a wrong or unreachable one
        // would otherwise leave every later command of this home failing on it.
        if (ReachPostgres(connection) is { } unreachable) return $"{home} stays as it was: {unreachable}";
        var target = Path.Combine(home, HomeStore.PostgresFileName);
        var left = File.Exists(Path.Combine(home, "home.db")) ? " (what home.db holds, its devices among them, is not carried over: enroll them again)" : "";
        Daiko.Cards.Pins.CardFiles.WritePrivate(target, System.Text.Encoding.UTF8.GetBytes(connection + "\n"));
        Console.Error.WriteLine($"daiko: all state of {home} is kept in PostgreSQL from now on ({target}); every home command uses it, and home.db is no longer read{left}");
        return null;
    }

    /// <summary>Null once the PostgreSQL database at <paramref name="connection"/> answers and holds the home's tables (made now if missing); else why not.</summary>
    private static string? ReachPostgres(string connection)
    {
        try
        {
            HomeStore.Postgres(connection).MigrateAsync().GetAwaiter().GetResult();
            return null;
        }
        catch (ArgumentException e)
        {
            return $"the connection string is not one Npgsql reads ({e.Message.Split(" (Parameter", 2)[0]})";
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or System.Net.Sockets.SocketException or TimeoutException or InvalidOperationException)
        {
            return $"PostgreSQL could not be used: {e.Message}";
        }
    }

    /// <summary>The purse's PostgreSQL connection string: from a file, the environment, or (with a warning) the command line.</summary>
    private static string? PurseConnectionString(string? onCommandLine, FileInfo? file)
    {
        if (file is not null) return File.ReadAllText(file.FullName).Trim();
        if (onCommandLine is not null)
        {
            Console.Error.WriteLine("daiko: warning: --purse-postgres on the command line is visible to other users of this machine (ps, /proc); use --purse-postgres-file FILE or DAIKO_PURSE_POSTGRES");
            return onCommandLine;
        }
        return Environment.GetEnvironmentVariable("DAIKO_PURSE_POSTGRES") is { Length: > 0 } fromEnvironment ? fromEnvironment : null;
    }

    private static Command Add()
    {
        var command = new Command("add", "Print a one-time enrollment code for a new terminal (valid 10 minutes, single use).")
            .WithExamples("daiko home device add --home ~/daiko-home --name phone", "daiko home device add --home ~/daiko-home --name phone --json",
                "daiko home device add --home ~/daiko-home --name kid --markets '*.books.example' --modes resume --spend-limit 1000");
        var home = HomeCardCommands.HomeOption();
        var name = new Option<string>("--name") { Description = "the new device's name", Required = true, HelpName = "NAME" };
        var json = new Option<bool>("--json") { Description = "print {\"name\",\"code\",\"expires\"}" };
        var policy = new DevicePolicyCommands.PolicyOptions();
        foreach (var o in new Option[] { home, name, json }) command.Options.Add(o);
        policy.AddTo(command);
        command.SetAction(async (parse, ct) =>
        {
            try
            {
                var dir = parse.GetValue(home)!;
                // The device starts from the policy the owner set for its name, else from home.json's device_defaults.
                var policies = DevicePolicyCommands.Store(dir);
                var set = await policies.FindAsync(parse.GetValue(name)!, ct);
                var chosen = policy.Apply(parse, set ?? HomeConfig.Load(dir).DeviceDefaults.ToPolicy());
                using var identity = HomeIdentity.LoadOrCreate(dir);
                var registry = new DeviceRegistry(HomeStore.ForHome(dir));
                var (secret, expires) = await DevicePolicyCommands.AddCodeAsync(registry, parse.GetValue(name)!, ct);
                if (set is null || policy.AnyGiven(parse)) await policies.SaveAsync(parse.GetValue(name)!, chosen, ct);
                PrintCode(parse.GetValue(name)!, EnrollmentCode.Compose(secret, identity.SpkiHash), expires, parse.GetValue(json));
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException)
            {
                // InvalidDataException (a malformed home.json) is an IOException and names the file.
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    /// <summary>Prints a new enrollment code (stdout) and until when it is valid (stderr), or {"name","code","expires"}.</summary>
    public static void PrintCode(string name, string code, DateTimeOffset expires, bool json)
    {
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new { name, code, expires }));
            return;
        }
        Console.WriteLine(code);
        Console.Error.WriteLine($"daiko: enter this code on the terminal with 'daiko terminal enroll' before {expires:HH:mm} UTC");
    }

    private static Command List()
    {
        var command = new Command("list", "List enrolled terminals with their policy, state and last use.").WithExamples("daiko home device list --home ~/daiko-home --json");
        var home = HomeCardCommands.HomeOption();
        var json = CliOutput.JsonOption();
        command.Options.Add(home);
        command.Options.Add(json);
        command.SetAction((parse, ct) => DevicePolicyCommands.ListAsync(parse.GetValue(home)!, parse.GetValue(json), ct));
        return command;
    }

    private static Command Revoke()
    {
        var command = new Command("revoke", "Revoke a terminal: refused within one second, its channels closed, its cached secrets purged.")
            .WithExamples("daiko home device revoke --home ~/daiko-home --name phone");
        var home = HomeCardCommands.HomeOption();
        var name = new Option<string>("--name") { Description = "the device's name", Required = true, HelpName = "NAME" };
        var json = CliOutput.JsonOption();
        command.Options.Add(home);
        command.Options.Add(name);
        command.Options.Add(json);
        command.SetAction(async (parse, ct) =>
        {
            var registry = new DeviceRegistry(HomeStore.ForHome(parse.GetValue(home)!));
            if (!await registry.RevokeAsync(parse.GetValue(name)!, ct)) return CliConsole.Fail($"no enrolled, unrevoked device is named '{parse.GetValue(name)}'");
            CliOutput.Print(parse.GetValue(json), new { revoked = parse.GetValue(name) }, $"device '{parse.GetValue(name)}' revoked");
            return 0;
        });
        return command;
    }
}
