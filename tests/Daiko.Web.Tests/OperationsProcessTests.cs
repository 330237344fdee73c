using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Daiko.TestSupport;

namespace Daiko.Web.Tests;

/// <summary>/healthz, /metrics and SIGHUP against a real <c>daiko home serve</c> process.</summary>
public sealed class OperationsProcessTests(HomeWithConsole system) : IClassFixture<HomeWithConsole>
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(20) };

    [Fact]
    public async Task Healthz_IsReady_WhenTheStoreAndTheTokenAnswer()
    {
        using var response = await Http.GetAsync(new Uri($"{system.ConsoleUrl}/healthz"));
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("ready", body.GetProperty("status").GetString());
        Assert.Equal("ok", body.GetProperty("store").GetString());
        Assert.Equal("ok", body.GetProperty("token").GetString());
    }

    [Theory]
    [InlineData("evil.example", HttpStatusCode.MisdirectedRequest)]
    [InlineData("127.0.0.1", HttpStatusCode.OK)]
    [InlineData("localhost", HttpStatusCode.OK)]
    [InlineData("[::1]", HttpStatusCode.OK)]
    public async Task OnPlainHttp_OnlyRequestsAddressedToALoopbackName_AreAnswered(string host, HttpStatusCode expected)
    {
        // A page whose name an attacker points at 127.0.0.1 (DNS rebinding) reaches the console with its own name as Host.
        foreach (var path in new[] { "/metrics", "/healthz" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri($"{system.ConsoleUrl}{path}"));
            request.Headers.Host = $"{host}:{system.ConsolePort}";
            using var response = await Http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(expected == response.StatusCode, $"{path} with Host {host}: {(int)response.StatusCode} {body}");
            if (expected != HttpStatusCode.OK) Assert.DoesNotContain("daiko_", body, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AFieldADeviceChose_CannotStartALogLineOfItsOwn()
    {
        // The payment id is the device's to write; the refusal that names it is logged.
        const string Forged = "00:00:00 device 0000000000000000: unlock: crypto-ready";
        var cancel = await DaikoCli.RunAsync(["terminal", "wallet", "cancel", "--terminal", system.Terminal, "--payment", "x\n" + Forged]);
        Assert.NotEqual(0, cancel.ExitCode);

        var clock = Stopwatch.StartNew();
        while (!system.Server.ErrorOutput.Contains("\\u000a" + Forged, StringComparison.Ordinal))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the refusal was not logged:\n{system.Server.ErrorOutput}");
            await Task.Delay(50);
        }
        Assert.DoesNotContain(system.Server.ErrorOutput.Split('\n'), l => l.StartsWith(Forged, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Metrics_ParseAsPrometheusText_AndCountWhatHappened()
    {
        // A wrong PIN1 from the terminal (then the right ones again, so the card stays usable).
        var wrong = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", system.Terminal], $"{HomeWithConsole.AccessPin}\n9999\n{HomeWithConsole.Pin2}\n");
        Assert.NotEqual(0, wrong.ExitCode);
        await HomeWithConsole.Ok(["terminal", "unlock", "--terminal", system.Terminal], $"{HomeWithConsole.AccessPin}\n{HomeWithConsole.Pin1}\n{HomeWithConsole.Pin2}\n");

        using var response = await Http.GetAsync(new Uri($"{system.ConsoleUrl}/metrics"));
        var text = await response.Content.ReadAsStringAsync();
        var (samples, types) = PrometheusText.Parse(text);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.MediaType, StringComparison.Ordinal);
        Assert.Equal("counter", types["daiko_pin_failures_total"]);
        Assert.True(samples.Single(s => s.Name == "daiko_pin_failures_total" && s.Labels["pin"] == "pin1").Value >= 1, text);
        Assert.Equal("gauge", types["daiko_card_state"]);
        Assert.Equal(1, samples.Single(s => s.Name == "daiko_card_state" && s.Labels["state"] == "crypto-ready").Value);
        Assert.Equal(1, samples.Where(s => s.Name == "daiko_card_state").Sum(s => s.Value));
        Assert.Equal("gauge", types["daiko_control_channels_open"]);
        Assert.Single(samples, s => s.Name == "daiko_control_channels_open");
        // Counts only: no device id, name or market anywhere in the labels.
        Assert.DoesNotContain(samples, s => s.Labels.Values.Any(v => v.Contains("phone", StringComparison.Ordinal) || v.Contains("127.0.0.1", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Sighup_ReloadsHomeJson_AndKeepsTheOldOneWhenTheNewOneIsBroken()
    {
        var config = Path.Combine(system.Home, "home.json");
        try
        {
            File.WriteAllText(config, """{ "limits": { "console_session_minutes": 45, "shutdown_seconds": 2 } }""");
            system.Signal("HUP");
            await system.Server.WaitForOutputAsync("configuration reloaded: console sessions 45 min", TimeSpan.FromSeconds(20));
            Assert.Contains("shutdown 2 s; new devices get markets *, modes resume,handoff,relay,assist; 1 trust root(s)", system.Server.Output, StringComparison.Ordinal);

            File.WriteAllText(config, """{ "limits": { "console_session_minutes": "long" } }""");
            system.Signal("HUP");
            await system.Server.WaitForOutputAsync("configuration NOT reloaded, the previous one stays", TimeSpan.FromSeconds(20));

            // Still serving after both.
            using var response = await Http.GetAsync(new Uri($"{system.ConsoleUrl}/healthz"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.False(system.Server.HasExited);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public async Task NewDevices_StartFromHomeJsonsDeviceDefaults_AddedByTheCliOrTheConsole_AndTheServerAppliesThem()
    {
        var config = Path.Combine(system.Home, "home.json");
        try
        {
            File.WriteAllText(config, """{ "device_defaults": { "markets": "127.0.0.1", "modes": "relay", "spend_limit": 500, "max_tickets": 3, "payees": "corner-shop" } }""");
            system.Signal("HUP");
            await system.Server.WaitForOutputAsync("new devices get markets 127.0.0.1, modes relay", TimeSpan.FromSeconds(20));

            // A policy the owner set for a name before adding it stays (starting from the defaults); the others are the defaults.
            await HomeWithConsole.Ok(["home", "device", "policy", "--home", system.Home, "--name", "kid", "--modes", "resume"]);
            await HomeWithConsole.Ok(["home", "device", "add", "--home", system.Home, "--name", "kid"]);
            var tabletCode = (await HomeWithConsole.Ok(["home", "device", "add", "--home", system.Home, "--name", "tablet"])).StandardOutput.Trim();
            var enrollPage = await ConsoleEnrollAsync("laptop");

            Assert.Contains("Its policy: markets 127.0.0.1; modes relay; spend limit 500 a day; payees corner-shop; up to 3 tickets per market", enrollPage, StringComparison.Ordinal);
            foreach (var name in new[] { "tablet", "laptop" })
            {
                var policy = await PolicyAsync(name);
                Assert.Equal(["127.0.0.1"], policy.GetProperty("markets").EnumerateArray().Select(m => m.GetString()));
                Assert.Equal(["relay"], policy.GetProperty("modes").EnumerateArray().Select(m => m.GetString()));
                Assert.Equal(500, policy.GetProperty("spend_limit").GetInt64());
                Assert.Equal(3, policy.GetProperty("max_tickets").GetInt32());
                Assert.Equal(["corner-shop"], policy.GetProperty("payees").EnumerateArray().Select(p => p.GetString()));
            }
            // Set by name before it was added, it starts from the defaults too: only the modes differ (no payee or market opened by it).
            var kid = await PolicyAsync("kid");
            Assert.Equal(["resume"], kid.GetProperty("modes").EnumerateArray().Select(m => m.GetString()));
            Assert.Equal(["127.0.0.1"], kid.GetProperty("markets").EnumerateArray().Select(m => m.GetString()));
            Assert.Equal(["corner-shop"], kid.GetProperty("payees").EnumerateArray().Select(p => p.GetString()));
            Assert.Equal(500, kid.GetProperty("spend_limit").GetInt64());

            // The running server applies it: the tablet may relay to the loopback market, and not resume.
            var tablet = Path.Combine(system.Dir.Path, "tablet");
            await HomeWithConsole.Ok(["terminal", "enroll", "--terminal", tablet, "--home", $"127.0.0.1:{system.Port}", "--code", tabletCode], HomeWithConsole.AccessPin + "\n");
            await HomeWithConsole.Ok(["terminal", "unlock", "--terminal", tablet], $"{HomeWithConsole.AccessPin}\n{HomeWithConsole.Pin1}\n{HomeWithConsole.Pin2}\n");
            try
            {
                using var market = await KestrelServer.StartAsync(system.Pki);
                var resume = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{market.Port}/", "--terminal", tablet, "--mode", "resume"]);
                var relay = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{market.Port}/", "--terminal", tablet, "--mode", "relay"]);

                Assert.Equal(1, resume.ExitCode);
                Assert.Contains("may not use mode resume (its modes: relay)", resume.StandardError, StringComparison.Ordinal);
                Assert.True(relay.ExitCode == 0, relay.ToString());
            }
            finally
            {
                await DaikoCli.RunAsync(["terminal", "lock", "--terminal", tablet]);
            }
        }
        finally
        {
            File.Delete(config);
            system.Signal("HUP");
        }
    }

    private async Task<JsonElement> PolicyAsync(string name) =>
        JsonDocument.Parse((await HomeWithConsole.Ok(["home", "device", "policy", "--home", system.Home, "--name", name, "--json"])).StandardOutput).RootElement.GetProperty("policy");

    /// <summary>Logs into the console with a fresh link (as a browser would, cookies kept) and posts its enroll form.</summary>
    private async Task<string> ConsoleEnrollAsync(string name)
    {
        using var browser = new HttpClient(new HttpClientHandler { CookieContainer = new CookieContainer() }) { Timeout = TimeSpan.FromSeconds(20) };
        var card = await browser.GetStringAsync(new Uri(await system.LinkAsync()));
        var csrf = System.Text.RegularExpressions.Regex.Match(card, "name=\"csrf\" value=\"([^\"]+)\"").Groups[1].Value;
        Assert.NotEmpty(csrf);
        using var form = new FormUrlEncodedContent([new("csrf", csrf), new("name", name)]);
        using var response = await browser.PostAsync(new Uri($"{system.ConsoleUrl}/devices/enroll"), form);
        var page = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, page);
        return page;
    }
}

/// <summary>
/// SIGTERM with a relay open: the process stops accepting, cuts the relay, ends the devices' sessions in
/// the store, forgets the console's address and exits 0 within 5 s.
/// </summary>
public sealed class ShutdownProcessTests
{
    [Fact]
    public async Task Sigterm_WithARelayOpen_ExitsWithin5Seconds_AndCutsTheRelay()
    {
        var system = new HomeWithConsole();
        await system.InitializeAsync();
        try
        {
            using var market = await KestrelServer.StartAsync(system.Pki);
            var forwardPort = Loopback.FreePort();
            using var forward = DaikoCli.Start(["terminal", "forward", "--terminal", system.Terminal, "--listen", $"127.0.0.1:{forwardPort}", "--target", $"localhost:{market.Port}", "--mode", "relay"]);
            await Loopback.WaitForListenerAsync(forwardPort, TimeSpan.FromSeconds(60), () => !forward.HasExited);
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, forwardPort);
            var stream = client.GetStream();
            // A keep-alive request through the relay proves it is open, and leaves it open.
            await stream.WriteAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
            var buffer = new byte[4096];
            var first = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString(buffer, 0, first), StringComparison.Ordinal);

            var sessions = new Daiko.Home.Storage.SqlDeviceSessionStore(Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(system.Home, "home.db")));
            Assert.NotEmpty(await sessions.ListAsync());
            system.Signal("TERM");
            // From the server's "stopping" (the signal taken: a kill process's start is not the server's) to its exit, the
            // whole stop and the runtime's teardown within 5 s.
            var signalled = Stopwatch.StartNew();
            while (!system.Server.Output.Contains("home server stopping", StringComparison.Ordinal) && !system.Server.HasExited && signalled.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(25);
            }
            var clock = Stopwatch.StartNew();
            var exit = await system.Server.WaitForExitAsync(TimeSpan.FromSeconds(20));
            clock.Stop();

            Assert.Equal(0, exit);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the home server took {clock.Elapsed.TotalSeconds:0.00} s to exit after it said it was stopping");
            Assert.Contains("home server stopping", system.Server.Output, StringComparison.Ordinal);
            // Graceful, not merely over: the stop ran to its end, the phone's session ended in the store
            // (audited), and the console's address is gone, so a login link is refused until it runs again.
            Assert.Contains("home server stopped in ", system.Server.Output, StringComparison.Ordinal);
            Assert.Contains("session-end: the home server stopped", system.Server.Output, StringComparison.Ordinal);
            Assert.Empty(await sessions.ListAsync());
            var link = await DaikoCli.RunAsync(["home", "console-link", "--home", system.Home]);
            Assert.Equal(1, link.ExitCode);
            Assert.Contains("no console is running for this home", link.StandardError, StringComparison.Ordinal);
            // The relay went with it: the market connection through the home server is closed.
            Assert.True(await EndsAsync(stream, TimeSpan.FromSeconds(15)), "the relayed connection stayed open after the home server exited");
            // And nothing accepts any more on the control or console ports.
            await Assert.ThrowsAnyAsync<SocketException>(async () =>
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, system.ConsolePort);
            });
        }
        finally
        {
            await system.DisposeAsync();
        }
    }

    /// <summary>Reads what is left until the peer closes (true) or the time is up (false).</summary>
    private static async Task<bool> EndsAsync(Stream stream, TimeSpan within)
    {
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(within);
        try
        {
            while (await stream.ReadAsync(buffer, timeout.Token) > 0) { }
            return true;
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
