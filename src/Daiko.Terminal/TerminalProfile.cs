using System.Text.Json;
using System.Text.Json.Serialization;

namespace Daiko.Terminal;

/// <summary>What enrollment leaves in the terminal directory (nothing secret: the device key is in the access card).</summary>
public sealed record TerminalProfile
{
    [JsonPropertyName("home")] public required string Home { get; init; }

    [JsonPropertyName("home_spki_sha256")] public required string HomeSpkiSha256 { get; init; }

    [JsonPropertyName("device_id")] public required string DeviceId { get; init; }

    [JsonPropertyName("name")] public required string Name { get; init; }

    public static string PathIn(string directory) => System.IO.Path.Combine(directory, "terminal.json");

    public static TerminalProfile Load(string directory)
    {
        var path = PathIn(directory);
        if (!File.Exists(path)) throw new FileNotFoundException($"this terminal is not enrolled ({directory}); run 'daiko terminal enroll' first");
        return JsonSerializer.Deserialize<TerminalProfile>(File.ReadAllText(path)) ?? throw new InvalidDataException("terminal.json is unreadable");
    }

    public void Save(string directory) => File.WriteAllText(PathIn(directory), JsonSerializer.Serialize(this));

    [JsonIgnore]
    public (string Host, int Port) Endpoint
    {
        get
        {
            var colon = Home.LastIndexOf(':');
            return (Home[..colon].Trim('[', ']'), int.Parse(Home[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        }
    }
}
