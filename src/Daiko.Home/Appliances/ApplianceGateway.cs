using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Daiko.Home.Storage;

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
    private readonly IApplianceStore _store;
    private readonly HttpClient _http;
    private readonly TimeProvider _time;

    public ApplianceGateway(IApplianceStore store, HttpMessageHandler? handler = null, TimeProvider? time = null)
    {
        _store = store;
        // No redirect is followed (an appliance must not point the home server at another service of the home
        // network and have its answer handed to a device), and no proxy from the environment is used.
        _http = new HttpClient(handler ?? new SocketsHttpHandler { AllowAutoRedirect = false, UseProxy = false }, disposeHandler: handler is null)
        {
            Timeout = TimeSpan.FromSeconds(5),
        };
        _time = time ?? TimeProvider.System;
    }

    public Task RegisterAsync(Appliance appliance, CancellationToken cancellationToken = default)
    {
        if (appliance.Endpoint.Scheme is not ("http" or "https"))
            throw new ArgumentException("an appliance endpoint must be an http or https URL", nameof(appliance));
        return _store.RegisterAsync(appliance, cancellationToken);
    }

    public Task<IReadOnlyList<Appliance>> ListAsync(CancellationToken cancellationToken = default) => _store.ListAsync(cancellationToken);

    public async Task<ApplianceResult> GetStateAsync(string name, CancellationToken cancellationToken)
    {
        var appliance = await _store.FindAsync(name, cancellationToken);
        if (appliance is null) return Unknown(name);
        try
        {
            using var response = await _http.GetAsync(new Uri(appliance.Endpoint, "state"), HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            return await ReadAsync(appliance, response, cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException && !cancellationToken.IsCancellationRequested)
        {
            return new ApplianceResult(ApplianceOutcome.Unreachable, null, $"appliance '{name}' did not answer");
        }
    }

    /// <summary>Sends <paramref name="command"/> with its arguments to the appliance and returns its new state.</summary>
    public async Task<ApplianceResult> SendCommandAsync(string name, string command, IReadOnlyDictionary<string, string> arguments, CancellationToken cancellationToken)
    {
        var appliance = await _store.FindAsync(name, cancellationToken);
        if (appliance is null) return Unknown(name);
        var body = new JsonObject { ["command"] = command, ["arguments"] = new JsonObject(arguments.Select(a => KeyValuePair.Create(a.Key, (JsonNode?)a.Value))) };
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(appliance.Endpoint, "command")) { Content = JsonContent.Create(body) };
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            return await ReadAsync(appliance, response, cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException && !cancellationToken.IsCancellationRequested)
        {
            return new ApplianceResult(ApplianceOutcome.Unreachable, null, $"appliance '{name}' did not answer");
        }
    }

    /// <summary>Polls every registered appliance once and stores a reading for each that answers.</summary>
    public async Task<int> CollectAsync(CancellationToken cancellationToken)
    {
        var collected = 0;
        foreach (var appliance in await _store.ListAsync(cancellationToken))
        {
            var state = await GetStateAsync(appliance.Name, cancellationToken);
            if (state.Outcome == ApplianceOutcome.Done && state.State is not null)
            {
                collected++;
            }
        }
        return collected;
    }

    /// <summary>
    /// Runs <see cref="CollectAsync"/> at once and then every <paramref name="interval"/> until cancelled; a round that
    /// meets the store away is logged as part of a streak (<see cref="Hosting.BackgroundLook"/>), and the next collects again.
    /// </summary>
    public Task RunCollectorAsync(TimeSpan interval, Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken) =>
        new Hosting.BackgroundLook("collecting the appliances' readings", CollectAsync, e => e is System.Data.Common.DbException or IOException, _time, logger)
            .RunAsync(interval, cancellationToken, atOnce: true);

    /// <summary>The newest <paramref name="limit"/> readings of one appliance, newest first.</summary>
    public Task<IReadOnlyList<ApplianceReading>> ReadingsAsync(string name, int limit = 100, CancellationToken cancellationToken = default) =>
        _store.ReadingsAsync(name, limit, cancellationToken);

    /// <summary>The most of an appliance's answer that is read (a state or a command's result is a small JSON object).</summary>
    public const int MaxAnswerBytes = 64 * 1024;

    private async Task<ApplianceResult> ReadAsync(Appliance appliance, HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var answer = System.Buffers.ArrayPool<byte>.Shared.Rent(MaxAnswerBytes + 1);
        string text;
        try
        {
            var length = 0;
            // The client's timeout ends at the headers: the body gets the same bound of its own.
            using (var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            await using (var stream = await response.Content.ReadAsStreamAsync(cancellationToken))
            {
                bound.CancelAfter(_http.Timeout);
                for (int read; length <= MaxAnswerBytes && (read = await stream.ReadAsync(answer.AsMemory(length, MaxAnswerBytes + 1 - length), bound.Token)) > 0;) length += read;
            }
            if (length > MaxAnswerBytes)
            {
                return new ApplianceResult(ApplianceOutcome.Refused, null, $"appliance '{appliance.Name}' answered more than {MaxAnswerBytes / 1024} KiB");
            }
            text = System.Text.Encoding.UTF8.GetString(answer, 0, length);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(answer);
        }
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
        await _store.RecordAsync(new ApplianceReading(appliance.Name, _time.GetUtcNow(), text), cancellationToken);
        return new ApplianceResult(ApplianceOutcome.Done, text, null);
    }

    private static ApplianceResult Unknown(string name) => new(ApplianceOutcome.UnknownAppliance, null, $"no appliance named '{name}' is registered");

    private static string Truncate(string s) => s.Length <= 200 ? s : s[..200];

    public void Dispose() => _http.Dispose();
}
