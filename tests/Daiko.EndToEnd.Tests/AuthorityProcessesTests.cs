using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// Per-device authority and one truth for the card's state, with a real <c>daiko home serve</c>, real
/// terminal agents and nginx, driven through the CLI.
/// </summary>
public sealed class AuthorityProcessesTests : HomeTerminalAndNginx
{
    private Task<CliResult> GetAsync(string terminal, string mode = "relay") =>
        DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{Market.Port}/whoami", "--terminal", terminal, "--mode", mode], timeout: TimeSpan.FromSeconds(60));

    private static Task<CliResult> UnlockAsync(string terminal, string accessPin, string pin1 = HomeAndTerminal.Pin1, string pin2 = HomeAndTerminal.Pin2) =>
        DaikoCli.RunAsync(["terminal", "unlock", "--terminal", terminal], $"{accessPin}\n{pin1}\n{pin2}\n");

    [Fact]
    public async Task ASecondHomeServe_OnTheSameHome_IsRefused()
    {
        var second = await DaikoCli.RunAsync(["home", "serve", "--home", Parts.Home, "--listen", $"127.0.0.1:{Loopback.FreePort()}"], timeout: TimeSpan.FromSeconds(30));

        Assert.Equal(1, second.ExitCode);
        Assert.Contains($"another home server is already serving {Parts.Home}", second.StandardError, StringComparison.Ordinal);
        // The first one serves on.
        Assert.Equal(0, (await GetAsync(Parts.Terminal)).ExitCode);
    }

    [Fact]
    public async Task AWrongAccessPin_WithTheAgentRunning_IsRefusedAndCounted()
    {
        var first = await UnlockAsync(Parts.Terminal, "000000");
        var second = await UnlockAsync(Parts.Terminal, "totally-wrong");

        Assert.Equal(1, first.ExitCode);
        Assert.Contains("2 tries left", first.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("crypto-ready", first.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(1, second.ExitCode);
        Assert.Contains("1 try left", second.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("totally-wrong", first.StandardError + second.StandardError, StringComparison.Ordinal);
        // The right PIN still unlocks (and resets the count).
        Assert.Contains("crypto-ready", (await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n")).StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ADeviceThatDidNotGiveItsOwnPins_CanNeitherDelegateNorRead_WhileAnotherDid()
    {
        var tablet = Path.Combine(Parts.Dir.Path, "tablet");
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(Parts.Home, "tablet"))).StandardOutput.Trim();
        await HomeAndTerminal.Ok(["terminal", "enroll", "--terminal", tablet, "--home", $"127.0.0.1:{Parts.Port}", "--code", code], HomeAndTerminal.AccessPin + "\n");
        await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", tablet], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
        try
        {
            // The home server restarts: every session is over. Only the phone gives its PINs again; the
            // tablet's agent still runs with its access card open.
            Parts.Server.Dispose();
            await Parts.StartServerAsync();
            await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", Parts.Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");

            foreach (var mode in new[] { "relay", "assist", "auto" })
            {
                var get = await GetAsync(tablet, mode);
                Assert.True(get.ExitCode == 1, $"the tablet delegated ({mode}) on the phone's unlock: {get}");
                Assert.Contains("terminal unlock", get.StandardError, StringComparison.Ordinal);
            }
            var balance = await DaikoCli.RunAsync(["terminal", "wallet", "balance", "--terminal", tablet]);
            Assert.True(balance.ExitCode == 1, $"the tablet read the wallet on the phone's unlock: {balance}");
            Assert.Contains("terminal unlock", balance.StandardError, StringComparison.Ordinal);
            Assert.Equal(0, (await GetAsync(Parts.Terminal)).ExitCode);
        }
        finally
        {
            await DaikoCli.RunAsync(["terminal", "lock", "--terminal", tablet]);
        }
    }

    [Fact]
    public async Task Unblock_AppliesToTheRunningHomeServer_WithoutARestart()
    {
        await HomeAndTerminal.Ok(["terminal", "lock", "--terminal", Parts.Terminal]);
        for (var i = 0; i < 3; i++) await UnlockAsync(Parts.Terminal, HomeAndTerminal.AccessPin, pin2: $"999{i}");
        Assert.Contains("\"disabled\"", (await HomeAndTerminal.Ok(["home", "card", "status", "--home", Parts.Home, "--json"])).StandardOutput, StringComparison.Ordinal);

        var unblocked = System.Text.Json.JsonDocument.Parse((await HomeAndTerminal.Ok(["home", "card", "unblock", "--home", Parts.Home, "--json"], "admin-code-123\n5555\n6666\n")).StandardOutput).RootElement;
        Assert.True(unblocked.GetProperty("unblocked").GetBoolean());
        await Task.Delay(TimeSpan.FromSeconds(1));

        var unlock = await UnlockAsync(Parts.Terminal, HomeAndTerminal.AccessPin, "5555", "6666");
        Assert.True(unlock.ExitCode == 0, $"the running server did not take the unblock: {unlock}");
        Assert.Contains("crypto-ready", unlock.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(0, (await GetAsync(Parts.Terminal)).ExitCode);
    }
}

/// <summary>A certificate imported while the home server runs is used at once.</summary>
public sealed class LiveCertificateImportTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("daiko-live-cert");
    private ExternalProcess? _server;
    private NginxServer Market = null!;
    private TestPki _pki = null!;

    private string Home => Path.Combine(_dir.Path, "home");

    private string Terminal => Path.Combine(_dir.Path, "terminal");

    public async Task InitializeAsync()
    {
        _pki = TestPki.Create(Path.Combine(_dir.Path, "pki"));
        Market = await NginxServer.StartAsync(_pki, _dir.Path);
    }

    public async Task DisposeAsync()
    {
        await DaikoCli.RunAsync(["terminal", "lock", "--terminal", Terminal]);
        _server?.Dispose();
        Market.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task CertImport_AppliesToTheRunningHomeServer_WithoutARestart()
    {
        await HomeAndTerminal.InitHomeAsync(Home);
        await HomeAndTerminal.Ok(["home", "trust", "add", "--home", Home, "--ca", _pki.RootPath]);
        var port = Loopback.FreePort();
        _server = DaikoCli.Start(["home", "serve", "--home", Home, "--listen", $"127.0.0.1:{port}"]);
        await _server.WaitForOutputAsync("home server listening", TimeSpan.FromSeconds(30));
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(Home, "phone"))).StandardOutput.Trim();
        await HomeAndTerminal.Ok(["terminal", "enroll", "--terminal", Terminal, "--home", $"127.0.0.1:{port}", "--code", code], HomeAndTerminal.AccessPin + "\n");
        await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", Terminal], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
        string[] get = ["terminal", "get", $"https://localhost:{Market.Port}/whoami", "--terminal", Terminal, "--mode", "relay"];
        var before = await DaikoCli.RunAsync(get);
        Assert.Equal(1, before.ExitCode);
        Assert.Contains("no certificate yet", before.StandardError, StringComparison.Ordinal);

        var certPath = HomeAndTerminal.IssueUserCertificate(_pki, Home, Path.Combine(_dir.Path, "user.pem"));
        await HomeAndTerminal.Ok(["home", "cert", "import", "--home", Home, "--cert", certPath, "--chain", _pki.RootPath], HomeAndTerminal.Pin2 + "\n");
        await Task.Delay(TimeSpan.FromSeconds(1));

        var after = await DaikoCli.RunAsync(get);
        Assert.True(after.ExitCode == 0, $"the running server did not take the imported certificate: {after}");
        Assert.Contains("Alice Example", after.StandardOutput, StringComparison.Ordinal);
    }
}
