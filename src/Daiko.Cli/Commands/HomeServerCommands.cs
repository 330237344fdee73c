using System.CommandLine;
using System.Net;
using System.Text.Json;
using Daiko.Cards;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Home.Server;
using Daiko.Protocol;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko home serve</c> and <c>daiko home device …</c>.</summary>
internal static class HomeServerCommands
{
    public static void AddTo(Command parent)
    {
        parent.Subcommands.Add(Serve());
        var device = new Command("device", "Enroll, list and revoke terminals.");
        device.Subcommands.Add(Add());
        device.Subcommands.Add(List());
        device.Subcommands.Add(Revoke());
        parent.Subcommands.Add(device);
        var appliance = new Command("appliance", "Home appliances the home server controls for terminals (F16).");
        var add = new Command("add", "Register an appliance on the home network (HTTP+JSON: GET /state, POST /command).");
        var home = HomeCardCommands.HomeOption();
        var name = new Option<string>("--name") { Description = "the appliance's name", Required = true };
        var url = new Option<string>("--url") { Description = "its base URL on the home network", Required = true };
        foreach (var o in new Option[] { home, name, url }) add.Options.Add(o);
        add.SetAction(parse =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var endpoint)) return CliConsole.Fail("--url must be an absolute http(s) URL");
            try
            {
                using var gateway = new Daiko.Home.Appliances.ApplianceGateway(HomeServer.DatabasePath(parse.GetValue(home)!));
                gateway.Register(new Daiko.Home.Appliances.Appliance(parse.GetValue(name)!, endpoint));
                Console.WriteLine($"appliance '{parse.GetValue(name)}' registered");
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

    public static IPEndPoint ParseEndpoint(string text)
    {
        var colon = text.LastIndexOf(':');
        if (colon < 0 || !int.TryParse(text[(colon + 1)..], out var port)) throw new FormatException($"'{text}' is not HOST:PORT");
        var host = text[..colon].Trim('[', ']');
        var address = host is "localhost" ? IPAddress.Loopback : IPAddress.Parse(host);
        return new IPEndPoint(address, port);
    }

    private static Command Serve()
    {
        var command = new Command("serve", "Run the home server: terminals connect here; the home card stays locked until a terminal gives PIN1 and PIN2.");
        var home = HomeCardCommands.HomeOption();
        var listen = new Option<string>("--listen") { Description = "HOST:PORT for terminals", DefaultValueFactory = _ => "127.0.0.1:7443" };
        var postgres = new Option<string?>("--purse-postgres") { Description = "keep the purse in PostgreSQL (Npgsql connection string) instead of the SQLite home store" };
        var web = new Option<string?>("--web") { Description = "HOST:PORT for the owner's status page (responsive HTML, read-only)" };
        foreach (var o in new Option[] { home, listen, web, postgres }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            HomeCard card;
            try
            {
                card = HomeCard.Open(new HomeCardOptions(parse.GetValue(home)!));
            }
            catch (Exception e) when (e is IOException or InvalidOperationException)
            {
                return CliConsole.Fail(e.Message);
            }
            using (card)
            {
                HomeServer server;
                try
                {
                    server = HomeServer.Start(new HomeServerOptions(parse.GetValue(home)!, ParseEndpoint(parse.GetValue(listen)!))
                    {
                        LoggerFactory = new StderrLog(),
                        PurseStore = parse.GetValue(postgres) is { } cs ? Daiko.Home.Storage.PurseStore.Postgres(cs) : null,
                    }, card);
                }
                catch (Exception e) when (e is System.Net.Sockets.SocketException or FormatException)
                {
                    return CliConsole.Fail($"cannot listen on {parse.GetValue(listen)}: {e.Message}");
                }
                await using (server)
                {
                    await using var page = parse.GetValue(web) is { } webAddress ? StatusPage.Start(ParseEndpoint(webAddress), card, server.Devices) : null;
                    Console.WriteLine($"home server listening on {server.LocalEndPoint} (card {card.CardId[..16]}, state {Daiko.Home.Handlers.CardGate.StateName(card.State)})");
                    if (page is not null) Console.WriteLine($"status page on http://{parse.GetValue(web)}/");
                    var stop = new TaskCompletionSource();
                    using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
                    using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
                    await Task.WhenAny(stop.Task, Task.Delay(Timeout.Infinite, ct));
                    Console.Error.WriteLine("daiko: home server stopping; the home card is locked");
                }
            }
            return 0;
        });
        return command;
    }

    private static Command Add()
    {
        var command = new Command("add", "Print a one-time enrollment code for a new terminal (valid 10 minutes, single use).");
        var home = HomeCardCommands.HomeOption();
        var name = new Option<string>("--name") { Description = "the new device's name", Required = true };
        var json = new Option<bool>("--json") { Description = "print {\"name\",\"code\",\"expires\"}" };
        foreach (var o in new Option[] { home, name, json }) command.Options.Add(o);
        command.SetAction(parse =>
        {
            try
            {
                var dir = parse.GetValue(home)!;
                using var identity = HomeIdentity.LoadOrCreate(dir);
                var registry = new DeviceRegistry(HomeServer.DatabasePath(dir));
                var (secret, expires) = registry.AddEnrollmentCode(parse.GetValue(name)!);
                var code = EnrollmentCode.Compose(secret, identity.SpkiHash);
                if (parse.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(new { name = parse.GetValue(name), code, expires }));
                }
                else
                {
                    Console.WriteLine(code);
                    Console.Error.WriteLine($"daiko: enter this code on the terminal with 'daiko terminal enroll' before {expires:HH:mm} UTC");
                }
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    private static Command List()
    {
        var command = new Command("list", "List enrolled terminals.");
        var home = HomeCardCommands.HomeOption();
        var json = new Option<bool>("--json") { Description = "print JSON" };
        command.Options.Add(home);
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            var devices = new DeviceRegistry(HomeServer.DatabasePath(parse.GetValue(home)!)).List();
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(devices.Select(d => new { id = d.Id, name = d.Name, enrolled_at = d.EnrolledAt, revoked = d.Revoked, revoked_at = d.RevokedAt })));
            }
            else
            {
                foreach (var d in devices) Console.WriteLine($"{d.Name,-20} {d.Id}  enrolled {d.EnrolledAt:yyyy-MM-dd HH:mm}{(d.Revoked ? $"  REVOKED {d.RevokedAt:yyyy-MM-dd HH:mm}" : "")}");
                if (devices.Count == 0) Console.Error.WriteLine("daiko: no terminal is enrolled; add one with 'daiko home device add --name NAME'");
            }
            return 0;
        });
        return command;
    }

    private static Command Revoke()
    {
        var command = new Command("revoke", "Revoke a terminal: refused within one second, its channels closed, its cached secrets purged.");
        var home = HomeCardCommands.HomeOption();
        var name = new Option<string>("--name") { Description = "the device's name", Required = true };
        command.Options.Add(home);
        command.Options.Add(name);
        command.SetAction(parse =>
        {
            var registry = new DeviceRegistry(HomeServer.DatabasePath(parse.GetValue(home)!));
            if (!registry.Revoke(parse.GetValue(name)!)) return CliConsole.Fail($"no enrolled, unrevoked device is named '{parse.GetValue(name)}'");
            Console.WriteLine($"device '{parse.GetValue(name)}' revoked");
            return 0;
        });
        return command;
    }
}
