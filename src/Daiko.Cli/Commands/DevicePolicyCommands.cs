using System.CommandLine;
using System.Text.Json;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Home.Policy;
using Daiko.Home.Storage;

namespace Daiko.Cli.Commands;

/// <summary>
/// <c>daiko home device policy</c>, and the same options on <c>device add</c>: what the owner lets each
/// device do, kept in the home store by device name (so it can be set before the device enrolls).
/// </summary>
internal static class DevicePolicyCommands
{
    /// <summary>The policy options, added to a command; <see cref="Apply"/> reads them back.</summary>
    public sealed class PolicyOptions
    {
        public Option<string?> Markets { get; } = new("--markets")
        {
            Description = "markets it may use, comma-separated: * (any public host), *.example.com, bank.example:8443; private and loopback hosts only by name, address or CIDR (127.0.0.1, 10.0.0.0/8); none",
            HelpName = "LIST",
        };

        public Option<string?> Modes { get; } = new("--modes") { Description = "delegation modes it may use: resume,handoff,relay,assist (auto chooses among these); none", HelpName = "LIST" };

        public Option<string?> SpendLimit { get; } = new("--spend-limit") { Description = "most it may pay per day in each currency, in minor units (0: nothing); none for no limit", HelpName = "AMOUNT" };

        public Option<int?> MaxTickets { get; } = new("--max-tickets") { Description = "most unexpired tickets it may hold per market (default 4)", HelpName = "N" };

        public Option<string?> TicketLifetime { get; } = new("--ticket-lifetime")
        {
            Description = "longest a ticket handed to it may live: 90s, 10m, 2h, 7d; market for the market's own (at most 7 days). (Handoff never gives a device a resumption secret.)",
            HelpName = "DURATION",
        };

        public Option<string?> Appliances { get; } = new("--appliances") { Description = "appliances it may see and control, comma-separated; * for all (default), none", HelpName = "LIST" };

        public Option<string?> Payees { get; } = new("--payees")
        {
            Description = "declared payees (daiko home payee, role market) it may pay, comma-separated; * for all (default), none. Refills and cancellations are not held to it",
            HelpName = "LIST",
        };

        public IEnumerable<Option> All => [Markets, Modes, SpendLimit, MaxTickets, TicketLifetime, Appliances, Payees];

        /// <summary>
        /// Adds the options to a <c>device add</c> command, and checks its <c>--name</c> as a new device's name
        /// (<see cref="DeviceName.Rule"/>; a mistake exits 2 before anything is written).
        /// </summary>
        public void AddTo(Command add)
        {
            AddOptionsTo(add);
            if (add.Options.OfType<Option<string>>().FirstOrDefault(o => o.Name == "--name") is { } name) CheckNewName(name);
        }

        /// <summary>Adds the options only (<c>device policy</c>, whose device may have been named before names were checked).</summary>
        public void AddOptionsTo(Command command)
        {
            foreach (var o in All) command.Options.Add(o);
        }

        public bool AnyGiven(ParseResult parse) => All.Any(o => parse.GetResult(o) is not null);

        /// <summary><paramref name="policy"/> with the options given; a malformed value is a usage mistake (exit 2).</summary>
        public DevicePolicy Apply(ParseResult parse, DevicePolicy policy)
        {
            try
            {
                if (parse.GetValue(Markets) is { } markets) policy = policy with { Markets = DevicePolicy.ParseMarkets(markets) };
                if (parse.GetValue(Modes) is { } modes) policy = policy with { Modes = DevicePolicy.ParseModes(modes) };
                if (parse.GetValue(SpendLimit) is { } spend) policy = policy with { SpendLimitPerDay = DevicePolicy.ParseSpendLimit(spend) };
                if (parse.GetValue(MaxTickets) is { } max)
                {
                    policy = max is >= 0 and <= 1000 ? policy with { MaxTickets = max } : throw new FormatException("--max-tickets takes a number from 0 to 1000");
                }
                if (parse.GetValue(TicketLifetime) is { } lifetime) policy = policy with { TicketLifetime = DevicePolicy.ParseTicketLifetime(lifetime) };
                if (parse.GetValue(Appliances) is { } appliances) policy = policy with { Appliances = DevicePolicy.ParseNames(appliances) };
                if (parse.GetValue(Payees) is { } payees) policy = policy with { Payees = DevicePolicy.ParsePayees(payees) };
                return policy;
            }
            catch (FormatException e)
            {
                throw new CliUsageException(e.Message);
            }
        }
    }

    /// <summary>Refuses, as a usage mistake, a <c>--name</c> that <see cref="DeviceName.Rule"/> does not allow.</summary>
    public static void CheckNewName(Option<string> name) => name.Validators.Add(r =>
    {
        if (DeviceName.Problem(r.GetValueOrDefault<string>()) is { } problem) r.AddError(problem);
    });

    /// <summary>What <c>device add</c> says (stderr) when the name had a code pending: that code no longer works.</summary>
    public static string ReplacedSentence(string name) => $"daiko: this replaces the enrollment code given earlier for {name}; that one no longer works";

    /// <summary>
    /// A new enrollment code for <paramref name="name"/>, saying on stderr when it replaces one still pending
    /// (what <c>home device add</c> calls instead of <see cref="DeviceRegistry.AddEnrollmentCodeAsync"/>).
    /// </summary>
    public static async Task<(string Code, DateTimeOffset ExpiresAt)> AddCodeAsync(DeviceRegistry registry, string name, CancellationToken ct)
    {
        var earlier = await registry.PendingAsync(name, ct);
        var code = await registry.AddEnrollmentCodeAsync(name, ct);
        if (earlier is not null) Console.Error.WriteLine(ReplacedSentence(name));
        return code;
    }

    public static IDevicePolicyStore Store(string home) => new SqlDevicePolicyStore(HomeOf(home));

    /// <summary>A home directory's store (the SQLite home.db).</summary>
    public static IHomeStore HomeOf(string home) => HomeStore.ForHome(home);

    /// <summary>The policy as <c>device list --json</c> and <c>device policy --json</c> show it.</summary>
    public static object Json(DevicePolicy policy) => new
    {
        markets = policy.Markets.Select(m => m.Text).ToArray(),
        modes = policy.ModesText == "none" ? [] : policy.ModesText.Split(','),
        spend_limit = policy.SpendLimitPerDay,
        max_tickets = policy.MaxTickets,
        ticket_lifetime_seconds = policy.TicketLifetime is { } l ? (long?)l.TotalSeconds : null,
        appliances = policy.Appliances?.ToArray() ?? ["*"],
        payees = policy.Payees?.ToArray() ?? ["*"],
    };

    public static string Text(DevicePolicy policy) =>
        $"markets {policy.MarketsText}; modes {policy.ModesText}; spend limit {(policy.SpendLimitPerDay is { } s ? $"{s} a day" : "none")}; " +
        $"max tickets {policy.MaxTickets}; ticket lifetime {DevicePolicy.FormatLifetime(policy.TicketLifetime)}; appliances {policy.AppliancesText}; payees {policy.PayeesText}";

    public static Command Policy() => Policy(HomeCardCommands.HomeOption(), (parse, home) => HomeOf(parse.GetValue(home)!), "home", "--home ~/daiko-home",
        (parse, home) => HomeConfig.Load(parse.GetValue(home)!).DeviceDefaults.ToPolicy());

    /// <summary><c>device policy</c> on the store <paramref name="storeOf"/> finds from <paramref name="where"/> (a home directory, or a hosted owner).</summary>
    /// <param name="newDevice">
    /// What a device that is neither enrolled nor given a policy yet starts from (home.json's device_defaults, which
    /// <c>device add</c> would give it): a policy set by name ahead of <c>device add</c> keeps what it does not change.
    /// Null: <see cref="DevicePolicy.Default"/>.
    /// </param>
    public static Command Policy(Option<string> where, Func<ParseResult, Option<string>, IHomeStore> storeOf, string verb, string whereExample,
        Func<ParseResult, Option<string>, DevicePolicy>? newDevice, params Option[] more)
    {
        var command = new Command("policy", "Set what a device may do: markets, delegation modes, daily spend limit, payees it may pay, tickets it may hold, appliances. Without options, show its policy.")
            .WithExamples(
                $"daiko {verb} device policy {whereExample} --name phone --markets '*.shop.example,bank.example:8443' --modes resume,relay",
                $"daiko {verb} device policy {whereExample} --name phone --spend-limit 5000 --max-tickets 2 --ticket-lifetime 1h",
                $"daiko {verb} device policy {whereExample} --name till --payees corner-shop,bakery",
                $"daiko {verb} device policy {whereExample} --name lab --markets '*,127.0.0.1,10.0.0.0/8' --appliances heater",
                $"daiko {verb} device policy {whereExample} --name phone --json");
        var home = where;
        var name = new Option<string>("--name") { Description = "the device's name", Required = true, HelpName = "NAME" };
        var json = CliOutput.JsonOption();
        var options = new PolicyOptions();
        command.Options.Add(home);
        foreach (var o in more) command.Options.Add(o);
        command.Options.Add(name);
        options.AddOptionsTo(command);
        command.Options.Add(json);
        command.SetAction(async (parse, ct) =>
        {
            var homeStore = storeOf(parse, home);
            var device = parse.GetValue(name)!;
            var store = new SqlDevicePolicyStore(homeStore);
            var registry = new DeviceRegistry(homeStore);
            var enrolled = await registry.FindAsync(device, ct) is not null;
            var set = await store.FindAsync(device, ct);
            if (!options.AnyGiven(parse) && !enrolled && set is null && await registry.PendingAsync(device, ct) is null)
            {
                // Nothing to show: no such device, no code pending for it, no policy set ahead for it (a typo, most likely).
                return CliConsole.Fail($"no device named '{device}' (see 'daiko {verb} device list')");
            }
            // A policy set for a name ahead of 'device add' makes the name: it is held to the rule 'device add' holds it to.
            if (!enrolled && set is null && DeviceName.Problem(device) is { } problem) throw new CliUsageException(problem);
            // An enrolled device without a row is served under the default; one not enrolled yet gets the defaults a new device gets.
            var policy = set ?? (enrolled || newDevice is null ? DevicePolicy.Default : newDevice(parse, home));
            if (options.AnyGiven(parse))
            {
                policy = options.Apply(parse, policy);
                await store.SaveAsync(device, policy, ct);
                if (!enrolled)
                {
                    Console.Error.WriteLine($"daiko: no device named '{device}' is enrolled yet; this policy applies when it enrolls");
                }
                if (parse.GetResult(options.Payees) is not null && policy.Payees is { Count: > 0 } payees)
                {
                    var markets = (await new SqlPayeeStore(homeStore).ListAsync(ct)).Where(p => p.Role == PayeeRole.Market).Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
                    foreach (var payee in payees.Where(p => !markets.Contains(p)))
                    {
                        Console.Error.WriteLine($"daiko: '{payee}' is not declared as a market payee; the device's payments to it are refused until it is"
                            + (verb == "home" ? $" ('daiko home payee add --home DIR --name {payee} --role market --key PEM')" : ""));
                    }
                }
            }
            CliOutput.Print(parse.GetValue(json), new { name = device, policy = Json(policy) }, $"{device}: {Text(policy)}");
            return 0;
        });
        return command;
    }

    /// <summary>Each device with its policy, state and last use, for <c>device list</c>.</summary>
    public static Task<int> ListAsync(string dir, bool json, CancellationToken ct) => ListAsync(HomeOf(dir), json, ct);

    public static async Task<int> ListAsync(IHomeStore homeStore, bool json, CancellationToken ct)
    {
        var registry = new DeviceRegistry(homeStore);
        var devices = await registry.ListAsync(ct);
        var pending = await registry.PendingAsync(ct);
        var store = new SqlDevicePolicyStore(homeStore);
        var rows = new List<(Device Device, DevicePolicy Policy, DateTimeOffset? LastUsed)>();
        foreach (var d in devices) rows.Add((d, await store.FindAsync(d.Name, ct) ?? DevicePolicy.Default, await store.LastUseAsync(d.Name, ct)));
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                devices = rows.Select(r => new
                {
                    id = r.Device.Id, name = r.Device.Name, enrolled_at = r.Device.EnrolledAt, revoked = r.Device.Revoked, revoked_at = r.Device.RevokedAt,
                    state = r.Device.Revoked ? "revoked" : "enrolled", last_used = r.LastUsed, policy = Json(r.Policy),
                }),
                pending = pending.Select(p => new { name = p.Name, expires = p.ExpiresAt }),
            }));
            return 0;
        }
        foreach (var (d, policy, lastUsed) in rows)
        {
            Console.WriteLine($"{d.Name,-20} {d.Id}  enrolled {d.EnrolledAt:yyyy-MM-dd HH:mm}{(d.Revoked ? $"  REVOKED {d.RevokedAt:yyyy-MM-dd HH:mm}" : "")}" +
                $"  last used {(lastUsed is { } at ? at.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture) : "never")}");
            Console.WriteLine($"{"",-20} {Text(policy)}");
        }
        foreach (var p in pending)
        {
            Console.WriteLine($"{p.Name,-20} pending: an enrollment code valid until {p.ExpiresAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture)} UTC");
        }
        if (devices.Count == 0 && pending.Count == 0) Console.Error.WriteLine("daiko: no terminal is enrolled; add one with 'daiko home device add --name NAME'");
        return 0;
    }
}
