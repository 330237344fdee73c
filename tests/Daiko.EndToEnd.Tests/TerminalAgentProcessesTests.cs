using System.Text.Json;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// A terminal whose way to the home server crosses a link the test can watch and cut (a loopback TCP
/// relay without delay), next to the fixture's own terminal: enrolled and unlocked through the CLI.
/// </summary>
public sealed class LinkedTerminal : IAsyncLifetime
{
    public HomeAndTerminal System { get; } = new();

    public SlowLink HomeLink { get; private set; } = null!;

    public string Terminal => Path.Combine(System.Dir.Path, "linked-terminal");

    public async Task InitializeAsync()
    {
        await System.InitializeAsync();
        HomeLink = SlowLink.Start(System.Port, TimeSpan.Zero, 1e12);
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(System.Home, "laptop"))).StandardOutput.Trim();
        await HomeAndTerminal.Ok(["terminal", "enroll", "--terminal", Terminal, "--home", $"127.0.0.1:{HomeLink.Port}", "--code", code], HomeAndTerminal.AccessPin + "\n");
        await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
    }

    public async Task DisposeAsync()
    {
        await DaikoCli.RunAsync(["terminal", "lock", "--terminal", Terminal]);
        HomeLink.Dispose();
        await System.DisposeAsync();
    }

    public async Task<JsonElement> GetWithStatsAsync(string url, params string[] extra)
    {
        var result = await DaikoCli.RunAsync(["terminal", "get", url, "--terminal", Terminal, "--stats", .. extra]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Alice Example", result.StandardOutput, StringComparison.Ordinal);
        return JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
    }
}

/// <summary>The terminal agent's one control channel, its local ticket stock and auto, as a user runs them.</summary>
public sealed class TerminalAgentProcessesTests(LinkedTerminal linked) : IClassFixture<LinkedTerminal>
{
    [Fact]
    public async Task SecondCommandAfterUnlock_RunsNoPublicKeyOperationOnTheControlChannel_AndOpensNoNewChannel()
    {
        using var market = await OpenSslServer.StartAsync(linked.System.Pki);
        var channels = linked.HomeLink.Connections;

        var relay = await linked.GetWithStatsAsync($"https://localhost:{market.Port}/", "--mode", "relay");

        Assert.Equal(0, relay.GetProperty("control_public_key_ops").GetInt64());
        // The total counts the agent's work too: relay leaves every public-key step to the home server.
        Assert.Equal(0, relay.GetProperty("public_key_ops").GetInt64());
        Assert.Equal(1, relay.GetProperty("control_round_trips").GetInt64());
        Assert.True(relay.GetProperty("control_bytes").GetInt64() > relay.GetProperty("bytes_received").GetInt64(), "control bytes on the wire carry the relayed bytes and their records");
        Assert.Equal(channels, linked.HomeLink.Connections);
    }

    [Fact]
    public async Task KilledControlConnection_Resumes_WithoutADeviceSignatureOrCertificateCheck()
    {
        using var market = await OpenSslServer.StartAsync(linked.System.Pki);
        await linked.GetWithStatsAsync($"https://localhost:{market.Port}/", "--mode", "relay");
        var channels = linked.HomeLink.Connections;

        linked.HomeLink.DropConnections();
        var after = await linked.GetWithStatsAsync($"https://localhost:{market.Port}/", "--mode", "relay");

        Assert.Equal(channels + 1, linked.HomeLink.Connections);
        // A full mutual handshake costs 4 (key share, agreement, the home server's CertificateVerify, the
        // device signature); a resumed one only its ECDHE (psk_dhe_ke: key share and agreement).
        Assert.Equal(2, after.GetProperty("control_public_key_ops").GetInt64());
        Assert.Equal(2, after.GetProperty("public_key_ops").GetInt64());
        Assert.True(after.GetProperty("control_round_trips").GetInt64() >= 2, "the reconnect's handshake is a round trip of the command that needed it");
    }

    [Fact]
    public async Task ResumeFromTheLocalStock_SendsNothingToTheHomeServerBeforeTheMarketConnect_AndSendsTheRequestIn0Rtt()
    {
        using var peer = await NginxServer.StartAsync(linked.System.Pki, linked.System.Dir.Path, new TlsPeerOptions { EarlyData = true });
        using var marketLink = SlowLink.Start(peer.Port, TimeSpan.Zero, 1e12);
        // Only the terminal's own connection goes through the link (--connect-to): the home server's (the
        // prefetch's, a refill, the market's psk_ke check) go to the market directly, and never trip the watch below.
        var url = $"https://localhost:{peer.Port}/whoami";
        await HomeAndTerminal.Ok(["terminal", "prefetch", url, "--terminal", linked.Terminal, "--count", "2"]);
        long? homeBytesAtMarketConnect = null;
        var homeBytesBefore = linked.HomeLink.UpstreamBytes + linked.HomeLink.DownstreamBytes;
        marketLink.OnConnection = () => homeBytesAtMarketConnect ??= linked.HomeLink.UpstreamBytes + linked.HomeLink.DownstreamBytes;

        var stats = await linked.GetWithStatsAsync(url, "--mode", "resume", "--early-data", "--connect-to", $"127.0.0.1:{marketLink.Port}");

        Assert.Equal(1, marketLink.Connections);
        Assert.Equal(homeBytesBefore, homeBytesAtMarketConnect);
        Assert.Equal(0, stats.GetProperty("control_bytes").GetInt64());
        Assert.Equal(0, stats.GetProperty("control_round_trips").GetInt64());
        Assert.Equal(0, stats.GetProperty("control_public_key_ops").GetInt64());
        Assert.True(stats.GetProperty("resumed").GetBoolean());
        Assert.True(stats.GetProperty("early_data_accepted").GetBoolean());
    }

    [Fact]
    public async Task ResumeFromTheLocalStock_AtAMarketWithAServerSideSessionCache_ResumesWithPskKe_WithoutTheClientCertificate()
    {
        using var peer = await NginxServer.StartAsync(linked.System.Pki, linked.System.Dir.Path, new TlsPeerOptions { AllowPskKe = true, StatefulTickets = true });
        var url = $"https://localhost:{peer.Port}/whoami";
        await HomeAndTerminal.Ok(["terminal", "prefetch", url, "--terminal", linked.Terminal, "--count", "1"]);

        var stats = await linked.GetWithStatsAsync(url, "--mode", "resume", "--kex", "psk_ke");

        Assert.True(stats.GetProperty("resumed").GetBoolean());
        Assert.Equal("psk_ke", stats.GetProperty("kex").GetString());
        Assert.Equal(0, stats.GetProperty("public_key_ops").GetInt64());
        Assert.Equal(0, stats.GetProperty("control_round_trips").GetInt64());
        // A stateful ticket is a session id, not the session (with the client certificate) sealed.
        Assert.True(stats.GetProperty("bytes_sent").GetInt64() < 700, $"ClientHello and request: {stats.GetProperty("bytes_sent").GetInt64()} bytes");
    }

    [Fact]
    public async Task AutoAgainstAMarketWithoutTickets_MakesOneControlRoundTrip_AndNoFailedResume()
    {
        using var peer = await OpenSslServer.StartAsync(linked.System.Pki, new TlsPeerOptions { Tickets = 0 });
        using var marketLink = SlowLink.Start(peer.Port, TimeSpan.Zero, 1e12);

        var stats = await linked.GetWithStatsAsync($"https://localhost:{marketLink.Port}/", "--mode", "auto");

        Assert.Equal("handoff", stats.GetProperty("mode").GetString());
        Assert.Equal(1, stats.GetProperty("control_round_trips").GetInt64());
        // One connection to the market: the home server's handshake for the handoff, no resume tried first.
        Assert.Equal(1, marketLink.Connections);
    }


    [Fact]
    public async Task AutoWithAStockedTicketTheMarketNoLongerTakes_FallsBackToHandoff_AndResumeSaysTheMarketRefusedIt()
    {
        // The stock holds tickets of one market process; the terminal's own connection goes to another on
        // the same name (as after a restart with new ticket keys), which cannot decrypt them.
        using var issuer = await OpenSslServer.StartAsync(linked.System.Pki);
        using var restarted = await OpenSslServer.StartAsync(linked.System.Pki);
        var url = $"https://localhost:{issuer.Port}/";
        await HomeAndTerminal.Ok(["terminal", "prefetch", url, "--terminal", linked.Terminal, "--count", "2"]);

        var auto = await linked.GetWithStatsAsync(url, "--mode", "auto", "--connect-to", $"127.0.0.1:{restarted.Port}");
        var resume = await DaikoCli.RunAsync(["terminal", "get", url, "--terminal", linked.Terminal, "--mode", "resume", "--connect-to", $"127.0.0.1:{restarted.Port}"]);

        Assert.Equal("handoff", auto.GetProperty("mode").GetString());
        Assert.Equal(1, resume.ExitCode);
        Assert.Contains("refused the delegated ticket", resume.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ResumeAfterTheMarketRestarted_DropsTheStaleTickets_AndResumesWithAFreshOne()
    {
        // The market's address stays; the process behind it (and so its ticket keys) changes after the prefetch.
        using var issuer = await OpenSslServer.StartAsync(linked.System.Pki);
        using var restarted = await OpenSslServer.StartAsync(linked.System.Pki);
        using var market = SlowLink.Start(issuer.Port, TimeSpan.Zero, 1e12);
        var url = $"https://localhost:{market.Port}/";
        await HomeAndTerminal.Ok(["terminal", "prefetch", url, "--terminal", linked.Terminal, "--count", "3"]);
        market.Retarget(restarted.Port);

        var first = await linked.GetWithStatsAsync(url, "--mode", "resume");
        var second = await linked.GetWithStatsAsync(url, "--mode", "resume");

        Assert.True(first.GetProperty("resumed").GetBoolean());
        Assert.True(second.GetProperty("resumed").GetBoolean());
        // The first paid for the refused ticket (a round trip with the market of its own) and then resumed
        // with a fresh one; the second met no stale ticket, in the agent's stock or at the home server.
        Assert.Equal(second.GetProperty("round_trips").GetInt64() + 1, first.GetProperty("round_trips").GetInt64());
    }

    private static JsonElement StatsLine(CliResult result)
    {
        Assert.True(result.ExitCode == 0, result.ToString());
        return JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
    }

    [Theory]
    [InlineData("wallet", "balance")]
    [InlineData("appliance", "list")]
    public async Task ACommandWithoutAMarket_CountsItsOneControlRoundTrip_OnTheWire(string group, string command)
    {
        var before = linked.HomeLink.UpstreamBytes + linked.HomeLink.DownstreamBytes;

        var stats = StatsLine(await DaikoCli.RunAsync(["terminal", group, command, "--terminal", linked.Terminal, "--json", "--stats"]));

        var onTheWire = linked.HomeLink.UpstreamBytes + linked.HomeLink.DownstreamBytes - before;
        Assert.Equal(0, stats.GetProperty("sessions").GetInt32());
        Assert.Equal(1, stats.GetProperty("control_round_trips").GetInt64());
        Assert.Equal(0, stats.GetProperty("control_public_key_ops").GetInt64());
        Assert.Equal(0, stats.GetProperty("public_key_ops").GetInt64());
        var control = stats.GetProperty("control_bytes").GetInt64();
        // TLS records on the channel, both ways (request and reply with their record overhead), as the link counted them.
        Assert.True(control > 2 * 22 && control <= onTheWire, $"control_bytes {control}, the link counted {onTheWire}");
    }

    /// <summary>
    /// The link's byte count once nothing has crossed it for a second (a closed channel's last records, and any background
    /// refill, are in: one quiet fifth of a second was not enough on a loaded machine).
    /// </summary>
    private static async Task<long> SettledBytesAsync(SlowLink link)
    {
        var (last, quiet) = (-1L, 0);
        for (var i = 0; i < 75 && quiet < 5; i++)
        {
            var now = link.UpstreamBytes + link.DownstreamBytes;
            quiet = now == last ? quiet + 1 : 0;
            last = now;
            await Task.Delay(200);
        }
        return last;
    }

    [Fact]
    public async Task Unlock_CountsTheChannelsFullHandshake_AndTheNextCommand_ItsExactBytesOnTheWire_WithoutPublicKeyWork()
    {
        var locked = StatsLine(await DaikoCli.RunAsync(["terminal", "lock", "--terminal", linked.Terminal, "--stats"]));
        Assert.Equal(1, locked.GetProperty("control_round_trips").GetInt64());
        Assert.Equal(0, locked.GetProperty("public_key_ops").GetInt64());
        Assert.True(locked.GetProperty("control_bytes").GetInt64() > 0);
        var before = await SettledBytesAsync(linked.HomeLink);

        var unlock = StatsLine(await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", linked.Terminal, "--stats"],
            $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n"));
        var unlockWire = linked.HomeLink.UpstreamBytes + linked.HomeLink.DownstreamBytes - before;

        // The new agent opens its channel for the unlock: a full mutual handshake (key share, agreement,
        // the home server's CertificateVerify, the device signature), then the unlock request.
        Assert.Equal(4, unlock.GetProperty("control_public_key_ops").GetInt64());
        Assert.Equal(4, unlock.GetProperty("public_key_ops").GetInt64());
        Assert.True(unlock.GetProperty("control_round_trips").GetInt64() >= 2, "the handshake and the unlock request");
        Assert.Equal(unlockWire, unlock.GetProperty("control_bytes").GetInt64());

        foreach (var (group, command) in new[] { ("wallet", "balance"), ("appliance", "list") })
        {
            before = await SettledBytesAsync(linked.HomeLink);
            var next = StatsLine(await DaikoCli.RunAsync(["terminal", group, command, "--terminal", linked.Terminal, "--json", "--stats"]));
            var wire = linked.HomeLink.UpstreamBytes + linked.HomeLink.DownstreamBytes - before;

            Assert.Equal(0, next.GetProperty("control_public_key_ops").GetInt64());
            Assert.Equal(0, next.GetProperty("public_key_ops").GetInt64());
            Assert.Equal(1, next.GetProperty("control_round_trips").GetInt64());
            Assert.Equal(wire, next.GetProperty("control_bytes").GetInt64());
        }
    }

    [Fact]
    public async Task AStoppedAgentWhoseBacklogFilledUp_IsSaidToTakeNoConnection_AndLockStopsIt_RatherThanLeaveItRunning()
    {
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(linked.System.Home, "stopped"))).StandardOutput.Trim();
        var directory = Path.Combine(linked.System.Dir.Path, "stopped");
        await HomeAndTerminal.Ok(["terminal", "enroll", "--terminal", directory, "--home", $"127.0.0.1:{linked.System.Port}"], $"{code}\n{HomeAndTerminal.AccessPin}\n");
        await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", directory], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
        var pid = int.Parse(File.ReadAllText(Path.Combine(directory, "agent.pid")), System.Globalization.CultureInfo.InvariantCulture);
        var waiting = new List<System.Net.Sockets.Socket>();
        try
        {
            using (var stop = System.Diagnostics.Process.Start("kill", ["-STOP", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await stop.WaitForExitAsync();
            // Clients the stopped agent never accepts fill its backlog; then a connect is refused at once.
            while (true)
            {
                var client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
                try
                {
                    await client.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(Path.Combine(directory, "agent.sock")));
                    waiting.Add(client);
                }
                catch (System.Net.Sockets.SocketException e) when (e.SocketErrorCode == System.Net.Sockets.SocketError.WouldBlock)
                {
                    client.Dispose();
                    break;
                }
                Assert.True(waiting.Count < 1000, "the agent's backlog never filled");
            }

            var command = await DaikoCli.RunAsync(["terminal", "appliance", "list", "--terminal", directory]);
            Assert.Equal(1, command.ExitCode);
            Assert.Contains("the terminal agent takes no connection (it is stopped or hung, and others wait): 'daiko terminal lock' stops it", command.StandardError, StringComparison.Ordinal);

            var locked = await DaikoCli.RunAsync(["terminal", "lock", "--terminal", directory]);
            Assert.True(locked.ExitCode == 0, locked.ToString());
            Assert.Contains("takes no connection", locked.StandardError, StringComparison.Ordinal);
            Assert.Contains("locking the access card anyway (this device's session with the home card, if one is open, ends at the home server's idle timeout)", locked.StandardError, StringComparison.Ordinal);
            // The socket could not name the agent, its command line did: it was stopped, not left with the access card open.
            Assert.True(Daiko.Cli.Commands.AgentProcess.HasEnded(pid), "the stopped agent is still running after lock");
            Assert.False(File.Exists(Path.Combine(directory, "agent.sock")));
            Assert.False(File.Exists(Path.Combine(directory, "agent.pid")));
        }
        finally
        {
            foreach (var client in waiting) client.Dispose();
            if (!Daiko.Cli.Commands.AgentProcess.HasEnded(pid)) System.Diagnostics.Process.GetProcessById(pid).Kill();
        }
    }

    [Fact]
    public async Task Enroll_CountsItsOwnChannelOnTheWire_AndPinChange_CostsNothingOnAnyWire()
    {
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(linked.System.Home, "tablet"))).StandardOutput.Trim();
        var directory = Path.Combine(linked.System.Dir.Path, "tablet");
        var before = await SettledBytesAsync(linked.HomeLink);

        var enroll = StatsLine(await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", directory, "--home", $"127.0.0.1:{linked.HomeLink.Port}", "--stats"],
            $"{code}\n{HomeAndTerminal.AccessPin}\n"));
        var wire = await SettledBytesAsync(linked.HomeLink) - before;

        // The device key's generation, the handshake's key share and agreement, the home server's CertificateVerify.
        Assert.Equal(4, enroll.GetProperty("control_public_key_ops").GetInt64());
        Assert.Equal(4, enroll.GetProperty("public_key_ops").GetInt64());
        Assert.True(enroll.GetProperty("control_round_trips").GetInt64() >= 2, "the handshake and the enroll request");
        Assert.Equal(wire, enroll.GetProperty("control_bytes").GetInt64());

        var changed = await DaikoCli.RunAsync(["terminal", "pin", "change", "--terminal", directory, "--stats", "--json"], $"{HomeAndTerminal.AccessPin}\n865432\n");
        var change = StatsLine(changed);
        var result = JsonDocument.Parse(changed.StandardOutput).RootElement;
        Assert.Equal((true, "file"), (result.GetProperty("changed").GetBoolean(), result.GetProperty("storage").GetString()));
        Assert.Equal(0, change.GetProperty("control_bytes").GetInt64());
        Assert.Equal(0, change.GetProperty("public_key_ops").GetInt64());
    }

    [Fact]
    public async Task Forward_PrintsEachConnectionsWholeCost_AsItCloses()
    {
        using var market = await OpenSslServer.StartAsync(linked.System.Pki);
        var listen = Loopback.FreePort();
        using var forward = DaikoCli.Start(["terminal", "forward", "--terminal", linked.Terminal, "--listen", $"127.0.0.1:{listen}",
            "--target", $"localhost:{market.Port}", "--mode", "relay", "--stats"]);
        await forward.WaitForOutputAsync("forwarding", TimeSpan.FromSeconds(30));

        using (var client = new System.Net.Sockets.TcpClient())
        {
            await client.ConnectAsync(System.Net.IPAddress.Loopback, listen);
            var stream = client.GetStream();
            await stream.WriteAsync("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"u8.ToArray());
            using var reader = new StreamReader(stream);
            Assert.Contains("Alice Example", await reader.ReadToEndAsync(), StringComparison.Ordinal);
        }
        await forward.WaitForOutputAsync("\"sessions\":1", TimeSpan.FromSeconds(30));

        var line = forward.Output.Split('\n').Last(l => l.Contains("\"sessions\":1", StringComparison.Ordinal));
        var stats = JsonDocument.Parse(line[line.IndexOf('{', StringComparison.Ordinal)..]).RootElement;
        Assert.Equal("relay", stats.GetProperty("modes")[0].GetString());
        Assert.Equal(0, stats.GetProperty("public_key_ops").GetInt64());
        Assert.Equal(1, stats.GetProperty("control_round_trips").GetInt64());
        Assert.True(stats.GetProperty("bytes_received").GetInt64() > 0);
        Assert.True(stats.GetProperty("control_bytes").GetInt64() > stats.GetProperty("bytes_received").GetInt64(), "the relayed bytes cross the control channel in its records");
    }
}

/// <summary>
/// A device's agent drops its local stock when the home server says so: its own session ended or the
/// owner changed its policy. Another device's lock leaves it alone.
/// </summary>
public sealed class TicketStockDropTests(Xunit.Abstractions.ITestOutputHelper output) : IAsyncLifetime
{
    private readonly LinkedTerminal _linked = new();

    public Task InitializeAsync() => _linked.InitializeAsync();

    public Task DisposeAsync() => _linked.DisposeAsync();

    private async Task<int> StockedAsync(string url)
    {
        var left = await HomeAndTerminal.Ok(["terminal", "prefetch", url, "--terminal", _linked.Terminal, "--count", "0", "--json"]);
        return JsonDocument.Parse(left.StandardOutput).RootElement.GetProperty("ready").GetInt32();
    }

    /// <summary>The stock once the home server has looked at the policy (it does once a second); bounded wait.</summary>
    private async Task<int> StockAfterPolicyPollAsync(string url)
    {
        var left = await StockedAsync(url);
        for (var i = 0; i < 20 && left > 0; i++)
        {
            await Task.Delay(250);
            left = await StockedAsync(url);
        }
        if (left > 0) output.WriteLine($"home server output:\n{_linked.System.Server.Output}");
        return left;
    }

    private async Task<string> StockTwoAsync(NginxServer peer)
    {
        var url = $"https://localhost:{peer.Port}/whoami";
        var filled = await HomeAndTerminal.Ok(["terminal", "prefetch", url, "--terminal", _linked.Terminal, "--count", "2", "--json"]);
        Assert.Equal(2, JsonDocument.Parse(filled.StandardOutput).RootElement.GetProperty("ready").GetInt32());
        return url;
    }

    [Fact]
    public async Task LockByAnotherDevice_LeavesThisAgentsStock()
    {
        using var peer = await NginxServer.StartAsync(_linked.System.Pki, _linked.System.Dir.Path);
        var url = await StockTwoAsync(peer);

        await HomeAndTerminal.Ok(["terminal", "lock", "--terminal", _linked.System.Terminal]);

        // This device's own session lives on: the tickets it was handed under it stay usable.
        Assert.Equal(2, await StockedAsync(url));
        var stats = await _linked.GetWithStatsAsync(url, "--mode", "resume");
        Assert.Equal(0, stats.GetProperty("control_round_trips").GetInt64());
    }

    [Fact]
    public async Task PolicyChange_DropsTheAgentsStock()
    {
        using var peer = await NginxServer.StartAsync(_linked.System.Pki, _linked.System.Dir.Path);
        var url = await StockTwoAsync(peer);

        await HomeAndTerminal.Ok(["home", "device", "policy", "--home", _linked.System.Home, "--name", "laptop", "--max-tickets", "999"]);

        Assert.Equal(0, await StockAfterPolicyPollAsync(url));
    }

    /// <summary>
    /// The home server cannot see an agent drop a ticket: an agent that ignored the notice would still
    /// hold them. So tickets it was told to drop keep counting against the limit until they expire —
    /// across a policy change and a lock and unlock — and a device never holds more than its limit.
    /// </summary>
    [Fact]
    public async Task TicketsTheAgentWasToldToDrop_StillCountAgainstTheLimit_UntilTheyExpire()
    {
        using var peer = await NginxServer.StartAsync(_linked.System.Pki, _linked.System.Dir.Path);
        var url = await StockTwoAsync(peer);
        string[] prefetch = ["terminal", "prefetch", url, "--terminal", _linked.Terminal, "--json", "--count"];

        // The owner lowers the limit to the two tickets the agent holds; the change makes the agent drop them.
        await HomeAndTerminal.Ok(["home", "device", "policy", "--home", _linked.System.Home, "--name", "laptop", "--max-tickets", "2"]);
        Assert.Equal(0, await StockAfterPolicyPollAsync(url));

        var refused = await DaikoCli.RunAsync([.. prefetch, "1"]);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("already holds 2 unexpired ticket(s)", refused.StandardError, StringComparison.Ordinal);

        // A lock ends the session and the agent is told again; a new unlock does not reset the count.
        await HomeAndTerminal.Ok(["terminal", "lock", "--terminal", _linked.Terminal]);
        await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", _linked.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
        var afterUnlock = await DaikoCli.RunAsync([.. prefetch, "1"]);
        Assert.Equal(1, afterUnlock.ExitCode);
        Assert.Contains("already holds 2 unexpired ticket(s)", afterUnlock.StandardError, StringComparison.Ordinal);
    }
}
