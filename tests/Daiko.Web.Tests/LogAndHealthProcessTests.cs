using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Daiko.TestSupport;

namespace Daiko.Web.Tests;

/// <summary><c>home serve --log-format json</c>: every stderr line one JSON object with the event's own fields, never a secret.</summary>
public sealed class JsonLogProcessTests
{
    private sealed class JsonLogSystem : HomeWithConsole
    {
        protected override IEnumerable<string> ServeOptions => ["--log-format", "json"];
    }

    [Fact]
    public async Task LogFormatJson_WritesOneObjectALine_WithEachEventsFields_AndNoSecret()
    {
        var system = new JsonLogSystem();
        await system.InitializeAsync();
        try
        {
            // The fixture enrolled and unlocked the phone; a reload and a stop log the rest.
            File.WriteAllText(Path.Combine(system.Home, "home.json"), """{ "limits": { "console_session_minutes": 40 } }""");
            system.Signal("HUP");
            await system.Server.WaitForOutputAsync("configuration reloaded", TimeSpan.FromSeconds(20));
            system.Signal("TERM");
            Assert.Equal(0, await system.Server.WaitForExitAsync(TimeSpan.FromSeconds(10)));

            var lines = system.Server.ErrorOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var events = lines.Select(Parse).ToList();

            Assert.True(events.Count >= 5, system.Server.ErrorOutput);
            foreach (var e in events)
            {
                Assert.True(DateTimeOffset.TryParse(e.GetProperty("time").GetString(), System.Globalization.CultureInfo.InvariantCulture, out _));
                Assert.Contains(e.GetProperty("level").GetString(), new[] { "information", "warning", "error", "critical" });
                Assert.StartsWith("Daiko.", e.GetProperty("category").GetString(), StringComparison.Ordinal);
                Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
                Assert.True(e.GetProperty("event_id").GetInt32() > 0);
            }
            var enrolled = Fields(events, "DeviceEnrolled").Single();
            Assert.Equal("phone", enrolled.GetProperty("name").GetString());
            Assert.Matches("^[0-9a-f]{16}$", enrolled.GetProperty("device_id").GetString());
            Assert.Contains(Fields(events, "Audited"), f => f.GetProperty("action").GetString() == "unlock" && f.GetProperty("outcome").GetString() == "crypto-ready");
            Assert.Equal(40, Fields(events, "Reloaded").Single().GetProperty("session_minutes").GetInt32());
            Assert.Single(events, e => e.TryGetProperty("event", out var n) && n.GetString() == "Stopping");
            Assert.InRange(Fields(events, "Stopped").Single().GetProperty("seconds").GetDouble(), 0, 5);

            // No secret anywhere in the log, in a message or a field, alone or inside a longer value: the
            // PINs, the admin code, and the enrollment code's secret as the server receives it (normalized,
            // without the dashes of the printed code).
            var log = system.Server.ErrorOutput;
            foreach (var secret in new[] { HomeWithConsole.Pin1, HomeWithConsole.Pin2, HomeWithConsole.AccessPin, "admin-code-123" })
                Assert.DoesNotContain(secret, log, StringComparison.Ordinal);
            var sent = new string(system.EnrollmentCode!.Where(char.IsLetterOrDigit).ToArray());
            Assert.Equal(28, sent.Length);
            Assert.DoesNotContain(sent[4..16], log, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotMatch("[0-9A-Z]{4}(-[0-9A-Z]{4}){6}", log);
        }
        finally
        {
            await system.DisposeAsync();
        }
    }

    private static JsonElement Parse(string line)
    {
        try
        {
            using var document = JsonDocument.Parse(line);
            Assert.Equal(JsonValueKind.Object, document.RootElement.ValueKind);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new Xunit.Sdk.XunitException($"a log line is not JSON ({e.Message}): {line}");
        }
    }

    private static IEnumerable<JsonElement> Fields(IEnumerable<JsonElement> events, string name) =>
        events.Where(e => e.TryGetProperty("event", out var n) && n.GetString() == name).Select(e => e.GetProperty("fields"));
}

/// <summary>/healthz answers 503 naming the store while the home store (a real PostgreSQL server) is down, and 200 again when it is back.</summary>
public sealed class HealthOutageProcessTests
{
    private sealed class HomeOnPostgres(string connectionFile) : HomeWithConsole
    {
        protected override bool EnrollTerminal => false;

        protected override IEnumerable<string> ServeOptions => ["--purse-postgres-file", connectionFile];
    }

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    [Fact]
    public async Task Healthz_Is503NamingTheStore_WhileTheStoreIsDown_AndReadyAgainAfter()
    {
        using var work = new TempDirectory("daiko-health");
        using var postgres = await PostgresServer.StartAsync(work.Path);
        var connectionFile = Path.Combine(work.Path, "store.conn");
        File.WriteAllText(connectionFile, postgres.ConnectionString);
        var system = new HomeOnPostgres(connectionFile);
        await system.InitializeAsync();
        try
        {
            var (up, upBody) = await HealthAsync(system);
            Assert.Equal(HttpStatusCode.OK, up);
            Assert.Equal("ok", upBody.GetProperty("store").GetString());

            await postgres.StopAsync();
            var (down, downBody) = await HealthAsync(system);

            Assert.Equal(HttpStatusCode.ServiceUnavailable, down);
            Assert.Equal("unavailable", downBody.GetProperty("status").GetString());
            Assert.StartsWith("failing: ", downBody.GetProperty("store").GetString(), StringComparison.Ordinal);
            Assert.Equal("ok", downBody.GetProperty("token").GetString());

            await postgres.StartAgainAsync();
            var (again, _) = await HealthAsync(system);
            Assert.Equal(HttpStatusCode.OK, again);
            Assert.False(system.Server.HasExited);
        }
        finally
        {
            await system.DisposeAsync();
        }
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> HealthAsync(HomeWithConsole system)
    {
        using var response = await Http.GetAsync(new Uri($"{system.ConsoleUrl}/healthz"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(Regex.IsMatch(response.Content.Headers.ContentType?.MediaType ?? "", "json"), text);
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }
}
