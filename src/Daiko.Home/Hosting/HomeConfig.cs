using System.Text.Json;
using System.Text.Json.Serialization;
using Daiko.Home.Policy;

namespace Daiko.Home.Hosting;

/// <summary>Limits the owner can tune in DIR/home.json; every one has a safe default.</summary>
public sealed record HomeLimits
{
    /// <summary>How long a console login lasts without use.</summary>
    [JsonPropertyName("console_session_minutes")] public int ConsoleSessionMinutes { get; init; } = 30;

    /// <summary>How long a link printed by <c>home console-link</c> stays valid.</summary>
    [JsonPropertyName("console_link_minutes")] public int ConsoleLinkMinutes { get; init; } = 5;

    /// <summary>How long SIGTERM lets the stop run before it cuts what is still in flight.</summary>
    [JsonPropertyName("shutdown_seconds")] public double ShutdownSeconds { get; init; } = 3;
}

/// <summary>
/// The policy a new device gets when it is added (<c>home device add</c> or the console's enroll form)
/// and the owner has not set one for its name; the same lists as <c>home device policy</c> takes.
/// Without home.json it is <see cref="DevicePolicy.Default"/>.
/// </summary>
public sealed record DeviceDefaults
{
    [JsonPropertyName("markets")] public string Markets { get; init; } = "*";

    [JsonPropertyName("modes")] public string Modes { get; init; } = "resume,handoff,relay,assist";

    [JsonPropertyName("spend_limit")] public long? SpendLimit { get; init; }

    [JsonPropertyName("max_tickets")] public int MaxTickets { get; init; } = DevicePolicy.DefaultMaxTickets;

    /// <summary>The declared markets a new device may pay: <c>*</c> (all), <c>none</c>, or names.</summary>
    [JsonPropertyName("payees")] public string Payees { get; init; } = "*";

    /// <summary>The policy these defaults give; a malformed list is a <see cref="FormatException"/>.</summary>
    public DevicePolicy ToPolicy()
    {
        if (MaxTickets is < 0 or > 1000) throw new FormatException("max_tickets must be 0 to 1000");
        if (SpendLimit is < 0) throw new FormatException("spend_limit must be 0 or more (minor units a day), or absent for no limit");
        return DevicePolicy.Default with
        {
            Markets = DevicePolicy.ParseMarkets(Markets),
            Modes = DevicePolicy.ParseModes(Modes),
            SpendLimitPerDay = SpendLimit,
            MaxTickets = MaxTickets,
            Payees = DevicePolicy.ParsePayees(Payees),
        };
    }
}

/// <summary>
/// DIR/home.json: listen addresses, limits and the defaults for new devices. Read at start and again
/// on SIGHUP (listen addresses then take effect at the next start; limits and defaults at once).
/// Command-line options win over the file. Holds no secret.
/// </summary>
public sealed record HomeConfig
{
    public const string FileName = "home.json";

    /// <summary>Where terminals connect (<c>--listen</c>).</summary>
    [JsonPropertyName("listen")] public string? Listen { get; init; }

    /// <summary>Where the owner's console, <c>/healthz</c> and <c>/metrics</c> listen (<c>--console</c>).</summary>
    [JsonPropertyName("console")] public string? Console { get; init; }

    /// <summary>HOST:PORT terminals use to reach the home server (the enrollment QR code carries it); default the listen address.</summary>
    [JsonPropertyName("advertise")] public string? Advertise { get; init; }

    [JsonPropertyName("limits")] public HomeLimits Limits { get; init; } = new();

    [JsonPropertyName("device_defaults")] public DeviceDefaults DeviceDefaults { get; init; } = new();

    /// <summary>How <c>home serve</c> writes its log on stderr: <c>plain</c> or <c>json</c> (<c>--log-format</c>; read at start).</summary>
    [JsonPropertyName("log_format")] public string? LogFormat { get; init; }

    private static readonly JsonSerializerOptions Json = new() { ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };

    public static string PathIn(string directory) => System.IO.Path.Combine(directory, FileName);

    /// <summary>Reads DIR/home.json; no file is the defaults. A malformed file is an <see cref="InvalidDataException"/> naming the problem.</summary>
    public static HomeConfig Load(string directory)
    {
        var path = PathIn(directory);
        if (!File.Exists(path)) return new HomeConfig();
        try
        {
            var config = JsonSerializer.Deserialize<HomeConfig>(File.ReadAllText(path), Json) ?? new HomeConfig();
            if (config.Limits.ConsoleSessionMinutes is < 1 or > 24 * 60) throw new InvalidDataException($"{path}: limits.console_session_minutes must be 1 to 1440");
            if (config.Limits.ConsoleLinkMinutes is < 1 or > 60) throw new InvalidDataException($"{path}: limits.console_link_minutes must be 1 to 60");
            if (config.Limits.ShutdownSeconds is < 0 or > 4.5) throw new InvalidDataException($"{path}: limits.shutdown_seconds must be 0 to 4.5");
            if (config.LogFormat is not (null or "plain" or "json")) throw new InvalidDataException($"{path}: log_format must be \"plain\" or \"json\"");
            try { config.DeviceDefaults.ToPolicy(); }
            catch (FormatException e) { throw new InvalidDataException($"{path}: device_defaults: {e.Message}", e); }
            return config;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }
}
