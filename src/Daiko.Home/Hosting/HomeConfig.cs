using System.Text.Json;
using System.Text.Json.Serialization;

namespace Daiko.Home.Hosting;

/// <summary>Limits the owner can tune in DIR/home.json; every one has a safe default.</summary>
public sealed record HomeLimits
{
    /// <summary>How long a console login lasts without use.</summary>
    [JsonPropertyName("console_session_minutes")] public int ConsoleSessionMinutes { get; init; } = 30;

    /// <summary>How long a link printed by <c>home console-link</c> stays valid.</summary>
    [JsonPropertyName("console_link_minutes")] public int ConsoleLinkMinutes { get; init; } = 5;

    /// <summary>How long SIGTERM waits for in-flight work before cutting it.</summary>
    [JsonPropertyName("shutdown_seconds")] public double ShutdownSeconds { get; init; } = 3;
}

/// <summary>What a device enrolled from the console gets until the owner sets its own policy.</summary>
public sealed record DeviceDefaults
{
    [JsonPropertyName("markets")] public string Markets { get; init; } = "*";

    [JsonPropertyName("modes")] public string Modes { get; init; } = "resume,handoff,relay,assist";

    [JsonPropertyName("spend_limit")] public long? SpendLimit { get; init; }

    [JsonPropertyName("max_tickets")] public int MaxTickets { get; init; } = 16;
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
            return config;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }
}
