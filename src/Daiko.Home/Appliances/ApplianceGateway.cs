using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;

namespace Daiko.Home.Appliances;

/// <summary>An appliance on the home network that the home server controls for terminals (F16, seed [0084]).</summary>
public sealed record Appliance(string Name, Uri Endpoint);

/// <summary>One state sample collected from an appliance.</summary>
public sealed record ApplianceReading(string Appliance, DateTimeOffset At, string State);

public enum ApplianceOutcome
{
    Done,
    UnknownAppliance,
    Unreachable,
    Refused,
}

/// <summary>The answer to a command or a state query; <see cref="State"/> is the appliance's JSON state.</summary>
public sealed record ApplianceResult(ApplianceOutcome Outcome, string? State, string? Reason);

/// <summary>
/// Remote control of, and data collection from, home appliances through the home server. Appliances
/// speak plain HTTP+JSON on the home network (<c>GET /state</c>, <c>POST /command</c>); only the home
/// server reaches them, and terminals reach the home server only over the encrypted, mutually
/// authenticated control channel. Readings are collected periodically into the home store.
/// </summary>
public sealed class ApplianceGateway : IDisposable
{
    private readonly string _connectionString;
    private readonly HttpClient _http;
    private readonly TimeProvider _time;

    public ApplianceGateway(string databasePath, HttpMessageHandler? handler = null, TimeProvider? time = null)
    {
        _connectionString = Storage.HomeDatabase.ConnectionString(databasePath);
        _http = new HttpClient(handler ?? new SocketsHttpHandler(), disposeHandler: handler is null) { Timeout = TimeSpan.FromSeconds(5) };
        _time = time ?? TimeProvider.System;
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS appliances (name TEXT PRIMARY KEY, endpoint TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS appliance_readings (
                id INTEGER PRIMARY KEY AUTOINCREMENT, appliance TEXT NOT NULL, at TEXT NOT NULL, state TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS appliance_readings_by_name ON appliance_readings(appliance, id);
            """;
        command.ExecuteNonQuery();
    }

    private SqliteConnection Open() => Storage.HomeDatabase.Open(_connectionString);

    public void Register(Appliance appliance)
    {
        if (appliance.Endpoint.Scheme is not ("http" or "https"))
            throw new ArgumentException("an appliance endpoint must be an http or https URL", nameof(appliance));
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO appliances(name, endpoint) VALUES($n, $e) ON CONFLICT(name) DO UPDATE SET endpoint = $e";
        command.Parameters.AddWithValue("$n", appliance.Name);
        command.Parameters.AddWithValue("$e", appliance.Endpoint.ToString());
        command.ExecuteNonQuery();
    }

    public IReadOnlyList<Appliance> List()
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT name, endpoint FROM appliances ORDER BY name";
        using var reader = command.ExecuteReader();
        var list = new List<Appliance>();
        while (reader.Read()) list.Add(new Appliance(reader.GetString(0), new Uri(reader.GetString(1))));
        return list;
    }

    public async Task<ApplianceResult> GetStateAsync(string name, CancellationToken cancellationToken)
    {
        var appliance = Find(name);
        if (appliance is null) return Unknown(name);
        try
        {
            using var response = await _http.GetAsync(new Uri(appliance.Endpoint, "state"), cancellationToken);
            return await ReadAsync(appliance, response, cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return new ApplianceResult(ApplianceOutcome.Unreachable, null, $"appliance '{name}' did not answer");
        }
    }

    /// <summary>Sends <paramref name="command"/> with its arguments to the appliance and returns its new state.</summary>
    public async Task<ApplianceResult> SendCommandAsync(string name, string command, IReadOnlyDictionary<string, string> arguments, CancellationToken cancellationToken)
    {
        var appliance = Find(name);
        if (appliance is null) return Unknown(name);
        var body = new JsonObject { ["command"] = command, ["arguments"] = new JsonObject(arguments.Select(a => KeyValuePair.Create(a.Key, (JsonNode?)a.Value))) };
        try
        {
            using var response = await _http.PostAsJsonAsync(new Uri(appliance.Endpoint, "command"), body, cancellationToken);
            return await ReadAsync(appliance, response, cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return new ApplianceResult(ApplianceOutcome.Unreachable, null, $"appliance '{name}' did not answer");
        }
    }

    /// <summary>Polls every registered appliance once and stores a reading for each that answers.</summary>
    public async Task<int> CollectAsync(CancellationToken cancellationToken)
    {
        var collected = 0;
        foreach (var appliance in List())
        {
            var state = await GetStateAsync(appliance.Name, cancellationToken);
            if (state.Outcome == ApplianceOutcome.Done && state.State is not null)
            {
                collected++;
            }
        }
        return collected;
    }

    /// <summary>Runs <see cref="CollectAsync"/> every <paramref name="interval"/> until cancelled.</summary>
    public async Task RunCollectorAsync(TimeSpan interval, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval, _time);
        try
        {
            do
            {
                await CollectAsync(cancellationToken);
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    public IReadOnlyList<ApplianceReading> Readings(string name, int limit = 100)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT appliance, at, state FROM appliance_readings WHERE appliance = $n ORDER BY id DESC LIMIT $l";
        command.Parameters.AddWithValue("$n", name);
        command.Parameters.AddWithValue("$l", limit);
        using var reader = command.ExecuteReader();
        var list = new List<ApplianceReading>();
        while (reader.Read())
        {
            list.Add(new ApplianceReading(reader.GetString(0), DateTimeOffset.Parse(reader.GetString(1), System.Globalization.CultureInfo.InvariantCulture), reader.GetString(2)));
        }
        return list;
    }

    private async Task<ApplianceResult> ReadAsync(Appliance appliance, HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            return new ApplianceResult(ApplianceOutcome.Refused, null, $"appliance '{appliance.Name}' refused: {(int)response.StatusCode} {Truncate(text)}");
        }
        try
        {
            using var _ = JsonDocument.Parse(text);
        }
        catch (JsonException)
        {
            return new ApplianceResult(ApplianceOutcome.Refused, null, $"appliance '{appliance.Name}' answered with something that is not JSON");
        }
        Record(appliance.Name, text);
        return new ApplianceResult(ApplianceOutcome.Done, text, null);
    }

    private void Record(string name, string state)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO appliance_readings(appliance, at, state) VALUES($n, $a, $s)";
        command.Parameters.AddWithValue("$n", name);
        command.Parameters.AddWithValue("$a", _time.GetUtcNow().ToString("O"));
        command.Parameters.AddWithValue("$s", state);
        command.ExecuteNonQuery();
    }

    private Appliance? Find(string name) => List().FirstOrDefault(a => a.Name == name);

    private static ApplianceResult Unknown(string name) => new(ApplianceOutcome.UnknownAppliance, null, $"no appliance named '{name}' is registered");

    private static string Truncate(string s) => s.Length <= 200 ? s : s[..200];

    public void Dispose() => _http.Dispose();
}
