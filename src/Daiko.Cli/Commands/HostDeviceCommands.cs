using System.CommandLine;
using Daiko.Home.Devices;
using Daiko.Home.Storage;
using Daiko.Host;
using Daiko.Protocol;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko host device add|list|revoke|policy --owner NAME</c>: as <c>home device …</c>, on that owner's schema.</summary>
internal static class HostDeviceCommands
{
    public static Command Device()
    {
        var device = new Command("device", "Enroll, list and revoke an owner's terminals, and set what each may do (as 'home device').")
            .WithExamples("daiko host device add --site /etc/daiko/site --owner alice --name phone");
        device.Subcommands.Add(Add());
        device.Subcommands.Add(List());
        device.Subcommands.Add(Revoke());
        var owner = HostCommands.OwnerOption();
        device.Subcommands.Add(DevicePolicyCommands.Policy(HostCommands.SiteOption(), (parse, site) => OwnerStore(parse.GetValue(site)!, parse.GetValue(owner)!),
            "host", "--site /etc/daiko/site --owner alice", null, owner));
        return device;
    }

    /// <summary>The owner's store (its schema); the owner must exist. Its data source is closed when the command returns.</summary>
    internal static IHomeStore OwnerStore(string siteDirectory, string owner)
    {
        if (!HostSite.IsOwnerName(owner)) throw new CliUsageException($"'{owner}' is not an owner name: use 1 to 48 lower-case letters, digits and dashes");
        var site = HostSite.Open(siteDirectory);
        var database = new SiteDatabase(CommandResources.Own(site.OpenDataSource(maxPool: 2)));
        if (database.Read(owner) is null) throw new CliUsageException($"no owner named '{owner}' in this deployment");
        return database.StoreOf(owner);
    }

    private static Command Add()
    {
        var command = new Command("add", "Print a one-time enrollment code for a new terminal of the owner (valid 10 minutes, single use); the code names the owner.")
            .WithExamples("daiko host device add --site /etc/daiko/site --owner alice --name phone --json");
        var site = HostCommands.SiteOption();
        var owner = HostCommands.OwnerOption();
        var name = new Option<string>("--name") { Description = "the new device's name", Required = true, HelpName = "NAME" };
        var json = new Option<bool>("--json") { Description = "print {\"name\",\"code\",\"expires\"}" };
        var policy = new DevicePolicyCommands.PolicyOptions();
        foreach (var o in new Option[] { site, owner, name, json }) command.Options.Add(o);
        policy.AddTo(command);
        command.SetAction((parse, ct) => HostCommands.WithSiteAsync(parse.GetValue(site)!, async (hosted, database) =>
        {
            var ownerName = HostSite.RequireOwnerName(parse.GetValue(owner)!);
            if (database.Read(ownerName) is null) return CliConsole.Fail($"no owner named '{ownerName}' in this deployment");
            var chosen = policy.Apply(parse, Daiko.Home.Policy.DevicePolicy.Default);
            var store = database.StoreOf(ownerName);
            var registry = new DeviceRegistry(store);
            using var identity = hosted.LoadIdentity();
            var earlier = await registry.PendingAsync(parse.GetValue(name)!, ct);
            // A public id is unique within the site while its code lives: it is how enrollment finds the owner.
            for (var attempt = 0; attempt < 8; attempt++)
            {
                var (secret, expires) = await registry.AddEnrollmentCodeAsync(parse.GetValue(name)!, ct);
                if (!await database.RegisterCodeAsync(secret[..EnrollmentCode.PublicIdLength], ownerName, expires, ct)) continue;
                if (policy.AnyGiven(parse)) await new SqlDevicePolicyStore(store).SaveAsync(parse.GetValue(name)!, chosen, ct);
                HomeServerCommands.PrintCode(parse.GetValue(name)!, EnrollmentCode.Compose(secret, identity.SpkiHash), expires, parse.GetValue(json));
                // (Said once: a retry above for a free id replaced only a code never given out.)
                if (earlier is not null) Console.Error.WriteLine(DevicePolicyCommands.ReplacedSentence(parse.GetValue(name)!));
                return 0;
            }
            return CliConsole.Fail("no free enrollment code id was found; try again");
        }));
        return command;
    }

    private static Command List()
    {
        var command = new Command("list", "List the owner's terminals with their policy, state and last use.").WithExamples("daiko host device list --site /etc/daiko/site --owner alice --json");
        var site = HostCommands.SiteOption();
        var owner = HostCommands.OwnerOption();
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { site, owner, json }) command.Options.Add(o);
        command.SetAction((parse, ct) => DevicePolicyCommands.ListAsync(OwnerStore(parse.GetValue(site)!, parse.GetValue(owner)!), parse.GetValue(json), ct));
        return command;
    }

    private static Command Revoke()
    {
        var command = new Command("revoke", "Revoke an owner's terminal: every node refuses it within one second.")
            .WithExamples("daiko host device revoke --site /etc/daiko/site --owner alice --name phone");
        var site = HostCommands.SiteOption();
        var owner = HostCommands.OwnerOption();
        var name = new Option<string>("--name") { Description = "the device's name", Required = true, HelpName = "NAME" };
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { site, owner, name, json }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            var registry = new DeviceRegistry(OwnerStore(parse.GetValue(site)!, parse.GetValue(owner)!));
            if (!await registry.RevokeAsync(parse.GetValue(name)!, ct)) return CliConsole.Fail($"no enrolled, unrevoked device of '{parse.GetValue(owner)}' is named '{parse.GetValue(name)}'");
            CliOutput.Print(parse.GetValue(json), new { revoked = parse.GetValue(name) }, $"device '{parse.GetValue(name)}' revoked");
            return 0;
        });
        return command;
    }
}
