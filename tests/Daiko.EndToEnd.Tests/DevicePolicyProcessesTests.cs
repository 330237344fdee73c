using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// The owner's device policy against a real <c>daiko home serve</c>, set with <c>daiko home device policy</c>
/// while it runs, and exercised with <c>daiko terminal get</c>, as a user would.
/// </summary>
public sealed class DevicePolicyProcessesTests(HomeAndTerminal system) : IClassFixture<HomeAndTerminal>
{
    private const string AllModes = "resume,handoff,relay,assist";

    /// <summary>Sets the phone's policy and waits until the running server has read it (it reads each policy again after 0.5 s).</summary>
    private async Task PolicyAsync(params string[] options)
    {
        await HomeAndTerminal.Ok(["home", "device", "policy", "--home", system.Home, "--name", "phone", .. options]);
        await Task.Delay(TimeSpan.FromSeconds(1.2));
    }

    private Task<CliResult> GetAsync(string url, string mode, params string[] extra) =>
        DaikoCli.RunAsync(["terminal", "get", url, "--terminal", system.Terminal, "--mode", mode, .. extra]);

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("localhost")]
    public async Task LoopbackMarket_IsRefusedBeforeAnyConnectionReachesIt_InEveryMode(string host)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        await PolicyAsync("--markets", "*", "--modes", AllModes);

        foreach (var mode in new[] { "resume", "handoff", "relay", "assist", "auto" })
        {
            var result = await GetAsync($"https://{host}:{port}/", mode);

            Assert.True(result.ExitCode == 1, result.ToString());
            Assert.Contains($"policy-refused: {host} resolves to a private address; the owner can allow it for this device", result.StandardError, StringComparison.Ordinal);
        }
        Assert.False(listener.Pending(), "a TCP connection reached the refused market");
        await system.Server.WaitForOutputAsync($"{host}:{port} ", TimeSpan.FromSeconds(5));
        Assert.Contains("refused by policy (markets (private address))", system.Server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LoopbackMarket_NamedInThePolicy_IsServed_AndAnUnlistedPublicNameIsRefused()
    {
        using var peer = await OpenSslServer.StartAsync(system.Pki);
        await PolicyAsync("--markets", "127.0.0.1", "--modes", AllModes);

        var allowed = await GetAsync($"https://localhost:{peer.Port}/", "relay");
        var unlisted = await GetAsync("https://shop.example:443/", "relay");

        Assert.True(allowed.ExitCode == 0, allowed.ToString());
        Assert.Contains("Alice Example", allowed.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(1, unlisted.ExitCode);
        Assert.Contains("policy-refused: this device may not use the market shop.example:443", unlisted.StandardError, StringComparison.Ordinal);
        await system.Server.WaitForOutputAsync("refused by policy (markets)", TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task ForbiddenMode_IsRefused_NeverServedInAnother_AndAutoChoosesAnAllowedOne()
    {
        using var peer = await NginxServer.StartAsync(system.Pki, system.Dir.Path);
        await PolicyAsync([.. LoopbackMarkets.PolicyOptions, "--modes", "relay"]);
        var url = $"https://localhost:{peer.Port}/whoami";

        var resume = await GetAsync(url, "resume");
        var handoff = await GetAsync(url, "handoff");
        var auto = await GetAsync(url, "auto", "--stats");

        Assert.Equal(1, resume.ExitCode);
        Assert.Contains("policy-refused: this device may not use mode resume (its modes: relay)", resume.StandardError, StringComparison.Ordinal);
        Assert.Empty(resume.StandardOutput);
        Assert.Equal(1, handoff.ExitCode);
        Assert.Contains("may not use mode handoff", handoff.StandardError, StringComparison.Ordinal);
        Assert.True(auto.ExitCode == 0, auto.ToString());
        Assert.Equal("relay", JsonDocument.Parse(auto.StandardError.Trim().Split('\n')[^1]).RootElement.GetProperty("mode").GetString());
        await system.Server.WaitForOutputAsync("refused by policy (modes)", TimeSpan.FromSeconds(5));
        await PolicyAsync([.. LoopbackMarkets.PolicyOptions, "--modes", AllModes]);
    }

    [Fact]
    public async Task DeviceList_ShowsEachDevicesPolicyStateAndLastUse_KeepingItsFields()
    {
        await PolicyAsync([.. LoopbackMarkets.PolicyOptions, "--modes", AllModes, "--spend-limit", "5000", "--ticket-lifetime", "1h", "--appliances", "heater"]);
        await DaikoCli.RunAsync(["terminal", "get", "https://127.0.0.1:1/", "--terminal", system.Terminal]);

        var list = await HomeAndTerminal.Ok(["home", "device", "list", "--home", system.Home, "--json"]);
        var phone = JsonDocument.Parse(list.StandardOutput).RootElement.GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("name").GetString() == "phone");

        foreach (var field in new[] { "id", "name", "enrolled_at", "revoked", "revoked_at" }) Assert.True(phone.TryGetProperty(field, out _), field);
        Assert.Equal("enrolled", phone.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.String, phone.GetProperty("last_used").ValueKind);
        var policy = phone.GetProperty("policy");
        Assert.Equal(["*", "127.0.0.1"], policy.GetProperty("markets").EnumerateArray().Select(m => m.GetString()));
        Assert.Equal(4, policy.GetProperty("modes").GetArrayLength());
        Assert.Equal(5000, policy.GetProperty("spend_limit").GetInt64());
        Assert.Equal(3600, policy.GetProperty("ticket_lifetime_seconds").GetInt64());
        Assert.Equal(["heater"], policy.GetProperty("appliances").EnumerateArray().Select(m => m.GetString()));
        await PolicyAsync([.. LoopbackMarkets.PolicyOptions, "--spend-limit", "none", "--ticket-lifetime", "market", "--appliances", "*"]);
    }

    [Theory]
    [InlineData("--markets", "10.0.0.1/8", "is not a CIDR block")]
    [InlineData("--modes", "relay,auto", "'auto' is not a mode")]
    [InlineData("--ticket-lifetime", "8d", "longer than 7 days")]
    [InlineData("--spend-limit", "lots", "is not a spend limit")]
    [InlineData("--payees", "corner-shop,*", "mixes * with names")]
    [InlineData("--payees", "corner shop", "'corner shop' is not a payee's name")]
    public async Task MalformedPolicy_IsAUsageMistake(string option, string value, string sentence)
    {
        var result = await DaikoCli.RunAsync(["home", "device", "policy", "--home", system.Home, "--name", "phone", option, value]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(sentence, result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AllowPrivateMarkets_IsAHomeWideEscapeHatch()
    {
        using var peer = await OpenSslServer.StartAsync(system.Pki);
        await PolicyAsync("--markets", "*", "--modes", AllModes);
        system.Server.Dispose();
        await system.StartServerAsync("--allow-private-markets");
        try
        {
            await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", system.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
            var result = await GetAsync($"https://localhost:{peer.Port}/", "relay");
            Assert.True(result.ExitCode == 0, result.ToString());
            await system.Server.WaitForOutputAsync("--allow-private-markets", TimeSpan.FromSeconds(5));
        }
        finally
        {
            system.Server.Dispose();
            await system.StartServerAsync();
            await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", system.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
            await PolicyAsync(LoopbackMarkets.PolicyOptions);
        }
    }
}
