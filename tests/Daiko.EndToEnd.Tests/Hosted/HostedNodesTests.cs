using System.Diagnostics;
using Daiko.TestSupport;
using Daiko.TestSupport.Hosted;

namespace Daiko.EndToEnd.Tests.Hosted;

/// <summary>
/// Stateless nodes over one PostgreSQL: several <c>daiko host serve</c> processes, changes made anywhere
/// applied on every node within a second (LISTEN/NOTIFY), PIN tries counted exactly across nodes, and a
/// node killed with SIGKILL behind HAProxy without the terminal entering a PIN again.
/// </summary>
[Collection(SecondStream.Name)]
public sealed class HostedNodesTests(HostedNodesTests.OneOwner owner) : IClassFixture<HostedNodesTests.OneOwner>
{
    /// <summary>One site with owners dave and erin; each test starts the nodes it needs.</summary>
    public sealed class OneOwner : IAsyncLifetime
    {
        public HostedSite Site { get; } = new();

        public async Task InitializeAsync()
        {
            await Site.InitializeAsync();
            await Site.AddOwnerAsync("dave");
            await Site.AddOwnerAsync("erin");
        }

        public Task DisposeAsync() => Site.DisposeAsync();
    }

    private HostedSite Site => owner.Site;

    [Fact]
    public async Task ARevocation_ClosesTheDevicesChannel_OnWhicheverNodeHoldsIt_WithinASecond()
    {
        // A backstop poll of a minute: only the change notice can close a channel within the bound below.
        var (first, firstPort) = await Site.StartNodeAsync(null, "--backstop-poll", "60");
        var (second, secondPort) = await Site.StartNodeAsync(null, "--backstop-poll", "60");
        var onFirst = await Site.EnrollAsync("dave", "on-first", firstPort);
        var onSecond = await Site.EnrollAsync("dave", "on-second", secondPort);
        await HostedSite.UnlockAsOwnerAsync(onFirst, "dave");
        await HostedSite.UnlockAsOwnerAsync(onSecond, "dave");
        Assert.Equal(0, (await Site.GetAsync(onFirst)).ExitCode);
        Assert.Equal(0, (await Site.GetAsync(onSecond)).ExitCode);

        foreach (var (name, node) in new[] { ("on-first", first), ("on-second", second) })
        {
            await HostedSite.Ok(["host", "device", "revoke", "--site", Site.Site, "--owner", "dave", "--name", name]);
            // The revoke has committed when the command exits: within a second, and as much again for a loaded machine
            // to run the notice, the node's reads and its log line (the backstop poll would take up to a minute).
            var clock = Stopwatch.StartNew();
            await node.WaitForOutputAsync("revoked: channel closed", TimeSpan.FromSeconds(10));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"{name}'s channel was closed {clock.Elapsed.TotalMilliseconds:0} ms after the revocation");
        }
        Assert.Equal(1, (await Site.GetAsync(onFirst)).ExitCode);
        Assert.Equal(1, (await Site.GetAsync(onSecond)).ExitCode);
    }

    [Fact]
    public async Task ADeviceRevoked_AndItsNameEnrolledAgain_WhileANodeCouldNotReachTheDatabase_LosesItsChannelAndSessionThereOnceItCan()
    {
        // The first node reaches PostgreSQL through a link the test cuts: its copy of the site directory names the link.
        using var link = SlowLink.Start(Site.Postgres.Port, TimeSpan.Zero, 1e12);
        var linked = Site.CopyOfSite("site-through-a-link");
        var connection = new Npgsql.NpgsqlConnectionStringBuilder(File.ReadAllText(Path.Combine(linked, "postgres")).Trim()) { Port = link.Port };
        File.WriteAllText(Path.Combine(linked, "postgres"), connection.ConnectionString + "\n");
        var (first, firstPort) = await Site.StartNodeOnAsync(linked);
        var old = await Site.EnrollAsync("dave", "reused", firstPort, "dave-reused-old");
        await HostedSite.UnlockAsOwnerAsync(old, "dave");
        Assert.Equal(0, (await Site.GetAsync(old)).ExitCode);
        var oldId = (await Site.QueryAsync("SELECT id FROM owner_dave.devices WHERE name = 'reused'")).Single();
        var sessionOfOld = $"SELECT session_id FROM owner_dave.device_sessions WHERE device_id = '{oldId}'";
        Assert.Single(await Site.QueryAsync(sessionOfOld));

        // The first node loses the database: its looks (the change notices and the backstop poll) fail, and are only logged.
        link.Retarget(Loopback.FreePort());
        link.DropConnections();
        await first.WaitForOutputAsync("listening for changes failed", TimeSpan.FromSeconds(10));

        // Meanwhile the device is revoked, and a new device is enrolled under its name through a second node: the revoked row goes.
        await HostedSite.Ok(["host", "device", "revoke", "--site", Site.Site, "--owner", "dave", "--name", "reused"]);
        var (_, secondPort) = await Site.StartNodeAsync();
        var replacement = await Site.EnrollAsync("dave", "reused", secondPort, "dave-reused-new");
        Assert.Empty(await Site.QueryAsync($"SELECT id FROM owner_dave.devices WHERE id = '{oldId}'"));

        // The first node reaches the database again: its next look closes the old device's channel; its session is over.
        link.Retarget(Site.Postgres.Port);
        await first.WaitForOutputAsync($"device {oldId} revoked: channel closed", TimeSpan.FromSeconds(15));
        Assert.Empty(await Site.QueryAsync(sessionOfOld));
        var refused = await Site.GetAsync(old);
        Assert.True(refused.ExitCode == 1, refused.ToString());
        Assert.Matches("not enrolled|revoked", refused.StandardError);

        // The new device of that name is served, through either node.
        await HostedSite.UnlockAsOwnerAsync(replacement, "dave");
        Assert.Equal(0, (await Site.GetAsync(replacement)).ExitCode);
        await HostedSite.Ok(["terminal", "lock", "--terminal", replacement]);
    }

    [Fact]
    public async Task ANodeOnACopyOfTheSiteWithoutItsIdentity_RefusesToStart_NamingTheMissingFileAndHostInit_AndMakesNoIdentity()
    {
        // host init made the identity; a copy that left it out is what a node or a command must not make another from.
        Assert.True(File.Exists(Path.Combine(Site.Site, "home-identity.pem")) && File.Exists(Path.Combine(Site.Site, "home-identity.key")));
        var partial = Site.CopyOfSite("site-without-identity", "home-identity.pem");
        var key = Path.Combine(partial, "home-identity.key");
        var certificate = Path.Combine(partial, "home-identity.pem");
        var expected = $"the identity file {certificate} is missing: it is made once, by 'daiko host init'";

        var serve = await DaikoCli.RunAsync(["host", "serve", "--site", partial, "--listen", $"127.0.0.1:{Loopback.FreePort()}"], timeout: TimeSpan.FromSeconds(30));
        Assert.True(serve.ExitCode == 2, serve.ToString());
        Assert.Contains(expected, serve.StandardError, StringComparison.Ordinal);
        Assert.Single(serve.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.DoesNotContain("listening", serve.StandardOutput, StringComparison.Ordinal);

        // Nor does the command that prints enrollment codes (which pin the identity) make one.
        var add = await DaikoCli.RunAsync(["host", "device", "add", "--site", partial, "--owner", "erin", "--name", "never"]);
        Assert.True(add.ExitCode == 1, add.ToString());
        Assert.Contains(expected, add.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(certificate));
        Assert.Equal(File.ReadAllText(Path.Combine(Site.Site, "home-identity.key")), File.ReadAllText(key));
    }

    [Fact]
    public async Task AnOwnerWithNoDeviceConnected_IsUnloadedAfterOwnerIdle_KeptWhileAChannelIsOpen_AndServedAgainWithoutAPinWhenADeviceReturns()
    {
        var (node, port) = await Site.StartNodeAsync(null, "--owner-idle", "2");
        using var link = SlowLink.Start(port, TimeSpan.Zero, 1e12);
        const string Unloaded = "owner 'erin' unloaded from this node";
        const string Loaded = "owner 'erin' loaded on this node";

        // Enrollment loads the owner; its connection ends with the command.
        var terminal = await Site.EnrollAsync("erin", "comes-and-goes", link.Port);
        await node.WaitForOutputAsync(Unloaded, TimeSpan.FromSeconds(15));

        // The agent keeps its channel open for the whole unlock: the owner stays loaded past several idle periods.
        await HostedSite.UnlockAsOwnerAsync(terminal, "erin");
        await Task.Delay(TimeSpan.FromSeconds(5));
        Assert.Equal(1, NodeOutput.Count(node.Output, Unloaded));
        Assert.Equal(0, (await Site.GetAsync(terminal)).ExitCode);

        // The channel drops (the agent and its unlock go on): the idle time counts from then, and the owner goes.
        var dropped = Stopwatch.StartNew();
        link.DropConnections();
        await NodeOutput.WaitForCountAsync(node, Unloaded, 2, TimeSpan.FromSeconds(15));
        // Idle counted from the last half-second tick that saw the channel open: 1.5 s after the drop at the earliest, less a
        // late tick on a loaded machine; counted from before the hold, it would unload within half a second of the drop.
        Assert.True(dropped.Elapsed > TimeSpan.FromSeconds(1.0), $"unloaded {dropped.Elapsed.TotalSeconds:0.0} s after the channel closed, with --owner-idle 2");

        // The agent connects again: the owner is loaded anew, and the device's unlock session (a row) still holds.
        Assert.Equal(0, (await Site.GetAsync(terminal)).ExitCode);
        Assert.Equal(3, NodeOutput.Count(node.Output, Loaded));
        await HostedSite.Ok(["terminal", "lock", "--terminal", terminal]);
    }

    [Fact]
    public async Task WrongPins_GuessedAtOnceThroughTwoNodes_GetExactlyThreeTries()
    {
        var (_, firstPort) = await Site.StartNodeAsync();
        var (_, secondPort) = await Site.StartNodeAsync();
        var terminals = new List<string>();
        for (var i = 0; i < 4; i++) terminals.Add(await Site.EnrollAsync("erin", $"guesser{i}", i % 2 == 0 ? firstPort : secondPort));

        var guesses = await Task.WhenAll(terminals.Select(t => HostedSite.UnlockAsync(t, "9999", "8888")));

        var said = guesses.Select(g => g.StandardError).ToList();
        Assert.All(guesses, g => Assert.Equal(1, g.ExitCode));
        Assert.Equal(1, said.Count(s => s.Contains("2 tries left", StringComparison.Ordinal)));
        Assert.Equal(1, said.Count(s => s.Contains("1 try left", StringComparison.Ordinal)));
        Assert.Equal(1, said.Count(s => s.Contains("now disabled", StringComparison.Ordinal)));
        Assert.Equal(("disabled", 0, 3), await Site.CardAsync("erin"));
        // The right PINs do not help a disabled card; the admin code does, once.
        var (pin1, pin2) = HostedSite.PinsOf("erin");
        Assert.Equal(1, (await HostedSite.UnlockAsync(terminals[1], pin1, pin2)).ExitCode);
        var unblocked = System.Text.Json.JsonDocument.Parse((await HostedSite.Ok(["host", "card", "unblock", "--site", Site.Site, "--owner", "erin", "--json"], $"admin-code-erin\n{pin1}\n{pin2}\n")).StandardOutput).RootElement;
        Assert.Equal(("erin", true), (unblocked.GetProperty("owner").GetString(), unblocked.GetProperty("unblocked").GetBoolean()));
        await HostedSite.UnlockAsOwnerAsync(terminals[1], "erin");
        Assert.Equal(("crypto-ready", 3, 3), await Site.CardAsync("erin"));
    }

    [Fact]
    public async Task KillingTheNodeThatHoldsATerminalsChannel_BehindHaproxy_TheTerminalCarriesOnWithoutAPin()
    {
        Assert.True(HaproxyServer.Available, "haproxy is not installed (scripts/install-deps.sh installs it)");
        var nodes = new[] { await Site.StartNodeAsync(), await Site.StartNodeAsync() };
        using var balancer = await HaproxyServer.StartAsync(nodes.Select(n => n.Port));
        var terminal = await Site.EnrollAsync("dave", "roamer", balancer.Port);
        await HostedSite.UnlockAsOwnerAsync(terminal, "dave");
        var before = await Site.GetAsync(terminal);
        Assert.True(before.ExitCode == 0, before.ToString());

        // The channel's node: the one with a connection in every look (the balancer's health checks come and go).
        var holding = nodes.Select(n => n.Port).ToHashSet();
        for (var look = 0; look < 3; look++)
        {
            holding.RemoveWhere(port => EstablishedOn(port) == 0);
            await Task.Delay(100);
        }
        var holder = nodes.Single(n => holding.Contains(n.Port));
        holder.Node.Kill();

        // The agent's channel drops; it reconnects through the balancer to the other node, which finds
        // the device's unlock session in the database: no PIN is asked for, and none is counted.
        var after = await Site.GetAsync(terminal);
        Assert.True(after.ExitCode == 0, $"after SIGKILL of the node on port {holder.Port}: {after}");
        Assert.Contains("Dave Example", after.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(("crypto-ready", 3, 3), await Site.CardAsync("dave"));
        Assert.True(nodes.Single(n => n.Port != holder.Port).Node.HasExited == false);
    }

    [Fact]
    public async Task BehindHaproxyWithProxyProtocol_TerminalsAreServed_AndAHeaderFromAPeerNotNamedByProxyFrom_IsRefused()
    {
        Assert.True(HaproxyServer.Available, "haproxy is not installed (scripts/install-deps.sh installs it)");
        var (node, port) = await Site.StartNodeAsync(null, "--proxy-protocol", "--proxy-from", "127.0.0.1");
        using var balancer = await HaproxyServer.StartAsync(port);
        var terminal = await Site.EnrollAsync("dave", "proxied", balancer.Port);
        await HostedSite.UnlockAsOwnerAsync(terminal, "dave");
        var fetched = await Site.GetAsync(terminal);
        Assert.True(fetched.ExitCode == 0, fetched.ToString());

        // A peer that reaches the node's port itself (not the balancer) and names an address of its choosing.
        using var direct = new System.Net.Sockets.TcpClient(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("127.0.2.9"), 0));
        await direct.ConnectAsync(System.Net.IPAddress.Loopback, port);
        var header = Daiko.Home.Control.ProxyProtocolV2.Encode(new Daiko.Home.Control.ProxyHeader(
            new System.Net.IPEndPoint(System.Net.IPAddress.Parse("192.0.2.44"), 4000), new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port)));
        await direct.GetStream().WriteAsync(header);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            Assert.Equal(0, await direct.GetStream().ReadAsync(new byte[64], deadline.Token));
        }
        catch (IOException)
        {
            // Reset: closed as well.
        }
        await node.WaitForOutputAsync("a connection from 127.0.2.9 was refused: it is not a load balancer this server trusts (--proxy-from 127.0.0.1/32)", TimeSpan.FromSeconds(10));
        Assert.DoesNotContain("192.0.2.44", node.Output, StringComparison.Ordinal);
        await HostedSite.Ok(["terminal", "lock", "--terminal", terminal]);
    }

    [Fact]
    public async Task ANodesConsole_IsReady_CountsItsTerminalsWork_ServesNoOwnerConsole_AndStopsWithTheNode()
    {
        var consolePort = Loopback.FreePort();
        var console = $"http://127.0.0.1:{consolePort}";
        var (node, port) = await Site.StartNodeAsync(null, "--console", $"127.0.0.1:{consolePort}");
        await node.WaitForOutputAsync($"console on {console}/ (/healthz and /metrics;", TimeSpan.FromSeconds(10));
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };

        using (var health = await http.GetAsync(new Uri($"{console}/healthz")))
        {
            var body = System.Text.Json.JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(System.Net.HttpStatusCode.OK, health.StatusCode);
            Assert.Equal("ready", body.GetProperty("status").GetString());
            Assert.Equal("ok", body.GetProperty("database").GetString());
            Assert.Equal("ok", body.GetProperty("token").GetString());
        }

        // A relayed request of a terminal through this node moves its delegation count.
        var before = (await MetricsAsync(http, console)).Samples;
        var terminal = await Site.EnrollAsync("dave", "watched", port);
        await HostedSite.UnlockAsOwnerAsync(terminal, "dave");
        var fetched = await Site.GetAsync(terminal);
        Assert.True(fetched.ExitCode == 0, fetched.ToString());
        // A second owner on the same node: its gauges add to the first one's (one meter per owner).
        var other = await Site.EnrollAsync("erin", "watched", port);
        await HostedSite.UnlockAsOwnerAsync(other, "erin");
        var (after, types, text) = await MetricsAsync(http, console);
        Assert.Equal("counter", types["daiko_delegations_total"]);
        Assert.True(Relayed(after) > Relayed(before), text);
        Assert.Equal("gauge", types["daiko_control_channels_open"]);
        Assert.True(after.Single(s => s.Name == "daiko_control_channels_open").Value >= 2, text);
        Assert.Equal(2, after.Single(s => s.Name == "daiko_card_state" && s.Labels["state"] == "crypto-ready").Value);
        Assert.Equal(2, after.Where(s => s.Name == "daiko_card_state").Sum(s => s.Value));

        // No owner console here yet: any other path says so, with the security headers of the home's console.
        foreach (var path in new[] { "/", "/devices", "/favicon.ico" })
        {
            using var page = await http.GetAsync(new Uri(console + path));
            Assert.Equal(System.Net.HttpStatusCode.NotFound, page.StatusCode);
            Assert.Contains("the owner's console is served by 'daiko home serve' only, for now", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.Equal("nosniff", page.Headers.GetValues("X-Content-Type-Options").Single());
        }
        await HostedSite.Ok(["terminal", "lock", "--terminal", terminal]);
        await HostedSite.Ok(["terminal", "lock", "--terminal", other]);

        // SIGTERM stops the node and its console.
        using (var kill = Process.Start("kill", ["-TERM", node.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!) await kill.WaitForExitAsync();
        Assert.Equal(0, await node.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(new Uri($"{console}/healthz")));
    }

    private static double Relayed(IEnumerable<PrometheusSample> samples) =>
        samples.Where(s => s.Name == "daiko_delegations_total" && s.Labels["mode"] == "relay" && s.Labels["outcome"] == "ok").Sum(s => s.Value);

    private static async Task<(IReadOnlyList<PrometheusSample> Samples, IReadOnlyDictionary<string, string> Types, string Text)> MetricsAsync(HttpClient http, string console)
    {
        using var response = await http.GetAsync(new Uri($"{console}/metrics"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.MediaType, StringComparison.Ordinal);
        var (samples, types) = PrometheusText.Parse(text);
        return (samples, types, text);
    }

    [Fact]
    public async Task TheCardRowLock_SerializesDecisionsOfManyPoolsAtOnce()
    {
        // Three data sources stand for three nodes; each decision reads the count, waits, and writes it plus one.
        var sources = Enumerable.Range(0, 3).Select(_ => Npgsql.NpgsqlDataSource.Create(Site.ConnectionString)).ToList();
        try
        {
            var databases = sources.Select(s => new Daiko.Host.SiteDatabase(s)).ToList();
            using var start = new Barrier(12);
            var seen = await Task.WhenAll(Enumerable.Range(0, 12).Select(i => Task.Run(() =>
            {
                start.SignalAndWait(TimeSpan.FromSeconds(30));
                return databases[i % 3].Update("dave", row =>
                {
                    Thread.Sleep(20);
                    return (row with { Pin2Failures = row.Pin2Failures + 1 }, row.Pin2Failures);
                });
            })));

            Assert.Equal(Enumerable.Range(0, 12), seen.Order());
            databases[0].Update("dave", row => (row with { Pin2Failures = 0 }, 0));
        }
        finally
        {
            foreach (var source in sources) await source.DisposeAsync();
        }
    }

    /// <summary>Established TCP connections to a local port (the node's side of a terminal's channel).</summary>
    private static int EstablishedOn(int port)
    {
        var info = new ProcessStartInfo("ss", ["-Htn", "state", "established", $"( sport = :{port} )"]) { RedirectStandardOutput = true };
        using var ss = Process.Start(info)!;
        var output = ss.StandardOutput.ReadToEnd();
        ss.WaitForExit(5000);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
    }
}
