using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// A home server, a terminal and real markets as separate processes, driven through the daiko CLI
/// exactly as a user would.
/// </summary>
public sealed class HomeAndTerminal : IAsyncLifetime
{
    public const string Pin1 = "1111";
    public const string Pin2 = "2222";
    public const string AccessPin = "432100";

    public TempDirectory Dir { get; } = new("daiko-e2e");

    public TestPki Pki { get; private set; } = null!;

    public string Home => Path.Combine(Dir.Path, "home");

    public string Terminal => Path.Combine(Dir.Path, "terminal");

    public ExternalProcess Server { get; private set; } = null!;

    public int Port { get; private set; }

    public async Task InitializeAsync()
    {
        Pki = TestPki.Create(Path.Combine(Dir.Path, "pki"));
        await InitHomeAsync(Home);
        var certPath = IssueUserCertificate(Pki, Home, Path.Combine(Dir.Path, "user.pem"));
        await Ok(["home", "cert", "import", "--home", Home, "--cert", certPath, "--chain", Pki.RootPath], Pin2 + "\n");
        await Ok(["home", "trust", "add", "--home", Home, "--ca", Pki.RootPath]);
        await StartServerAsync();
        var code = (await Ok(LoopbackMarkets.DeviceAdd(Home, "phone"))).StandardOutput.Trim();
        await Ok(["terminal", "enroll", "--terminal", Terminal, "--home", $"127.0.0.1:{Port}", "--code", code], AccessPin + "\n");
        await Ok(["terminal", "unlock", "--terminal", Terminal], $"{AccessPin}\n{Pin1}\n{Pin2}\n");
    }

    public async Task StartServerAsync(params string[] options)
    {
        // A port found free may be taken before the server binds it (another test process's outgoing connection gets the
        // same ephemeral port): a first start then tries another port; a restart keeps its port, as terminals know it.
        var chosenHere = Port == 0;
        for (var attempt = 1; ; attempt++)
        {
            Port = Port == 0 ? Loopback.FreePort() : Port;
            Server = DaikoCli.Start(["home", "serve", "--home", Home, "--listen", $"127.0.0.1:{Port}", .. options]);
            try
            {
                await Server.WaitForOutputAsync("home server listening", TimeSpan.FromSeconds(30));
                return;
            }
            catch (InvalidOperationException) when (chosenHere && attempt < 3 && Server.ErrorOutput.Contains("address is already in use", StringComparison.Ordinal))
            {
                Server.Dispose();
                Port = 0;
            }
        }
    }

    /// <summary><c>daiko home init</c> with this fixture's PINs and admin code.</summary>
    public static Task<CliResult> InitHomeAsync(string home) =>
        Ok(["home", "init", "--home", home, "--subject", TestPki.UserSubject], $"{Pin1}\n{Pin2}\nadmin-code-123\n");

    /// <summary>Issues the user's certificate for the home card's CSR, as a CA would; returns the PEM path.</summary>
    public static string IssueUserCertificate(TestPki pki, string home, string path)
    {
        var request = CertificateRequest.LoadSigningRequestPem(File.ReadAllText(Path.Combine(home, "user.csr")), HashAlgorithmName.SHA256);
        File.WriteAllText(path, pki.IssueForPublicKey(request.PublicKey, TestPki.UserSubject).ExportCertificatePem());
        return path;
    }

    public static async Task<CliResult> Ok(string[] args, string? stdin = null)
    {
        var result = await DaikoCli.RunAsync(args, stdin);
        Assert.True(result.ExitCode == 0, $"daiko {string.Join(' ', args)} failed: {result}");
        return result;
    }

    public async Task DisposeAsync()
    {
        await DaikoCli.RunAsync(["terminal", "lock", "--terminal", Terminal]);
        Server.Dispose();
        Dir.Dispose();
    }
}

public sealed class DelegationProcessesTests(HomeAndTerminal system) : IClassFixture<HomeAndTerminal>
{
    public static TheoryData<string, string> MarketsAndModes()
    {
        var data = new TheoryData<string, string>();
        foreach (var market in new[] { "nginx", "openssl", "gnutls", "kestrel" })
        foreach (var mode in new[] { "resume", "handoff", "relay", "assist" })
        {
            data.Add(market, mode);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(MarketsAndModes))]
    public async Task EveryMode_TheMarketSeesTheUsersCertificate(string market, string mode)
    {
        using var peer = await PeerFactory.StartAsync(market, system.Pki, system.Dir.Path);

        var result = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{peer.Port}{peer.IdentityPath}", "--terminal", system.Terminal, "--mode", mode, "--stats"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Alice Example", result.StandardOutput, StringComparison.Ordinal);
        var stats = JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
        Assert.Equal(mode, stats.GetProperty("mode").GetString());
        Assert.True(stats.GetProperty("control_bytes").GetInt64() > 0);
        Assert.True(stats.GetProperty("bytes_sent").GetInt64() > 0, "the terminal's bytes to the market were not counted");
        Assert.True(stats.GetProperty("bytes_received").GetInt64() > 0, "the terminal's bytes from the market were not counted");
        if (mode == "resume") Assert.True(stats.GetProperty("resumed").GetBoolean());
        // The terminal's own public-key work, counted by its TLS engine: resume with psk_dhe_ke makes a key
        // share and agrees (2); assist also verifies the market's CertificateVerify (3; the home card signs
        // and the home server judges the chain); handoff and relay leave every public-key step to the home.
        var expected = mode switch { "resume" => 2, "assist" => 3, _ => 0 };
        Assert.Equal(expected, stats.GetProperty("public_key_ops").GetInt64());
    }

    [Fact]
    public async Task ResumeWithPskKe_RunsNoPublicKeyOperationOnTheTerminal()
    {
        using var peer = await OpenSslServer.StartAsync(system.Pki, new TlsPeerOptions { AllowPskKe = true });

        var result = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{peer.Port}/", "--terminal", system.Terminal, "--mode", "resume", "--kex", "psk_ke", "--stats"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Alice Example", result.StandardOutput, StringComparison.Ordinal);
        var stats = JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
        Assert.Equal("psk_ke", stats.GetProperty("kex").GetString());
        Assert.Equal(0, stats.GetProperty("public_key_ops").GetInt64());
    }

    [Fact]
    public async Task ResumeWithKexAuto_OnAMarketThatAllowsPskKe_TakesItOnceTheHomeServerHasSeenIt()
    {
        using var peer = await NginxServer.StartAsync(system.Pki, system.Dir.Path, new TlsPeerOptions { AllowPskKe = true });
        var url = $"https://localhost:{peer.Port}/whoami";

        // --kex auto: the first session meets a market the home server knows nothing of (psk_dhe_ke); the home
        // server then tries psk_ke there itself, and tickets handed over afterwards (to the agent's stock too) say so.
        var seen = new List<string>();
        JsonElement stats = default;
        for (var i = 0; i < 10 && !seen.Contains("psk_ke"); i++)
        {
            if (i > 0) await Task.Delay(300);
            var result = await DaikoCli.RunAsync(["terminal", "get", url, "--terminal", system.Terminal, "--mode", "resume", "--kex", "auto", "--stats"]);
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Contains("Alice Example", result.StandardOutput, StringComparison.Ordinal);
            stats = JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
            seen.Add(stats.GetProperty("kex").GetString()!);
        }

        Assert.Equal("psk_dhe_ke", seen[0]);
        Assert.Equal("psk_ke", seen[^1]);
        Assert.Equal(0, stats.GetProperty("public_key_ops").GetInt64());

        // Tickets the agent stocks now say so too: served from the stock, nothing goes to the home server.
        Assert.True((await DaikoCli.RunAsync(["terminal", "prefetch", url, "--terminal", system.Terminal, "--count", "2"])).ExitCode == 0);
        var stocked = await DaikoCli.RunAsync(["terminal", "get", url, "--terminal", system.Terminal, "--mode", "resume", "--kex", "auto", "--stats"]);
        Assert.True(stocked.ExitCode == 0, stocked.ToString());
        var stockedStats = JsonDocument.Parse(stocked.StandardError.Trim().Split('\n')[^1]).RootElement;
        Assert.Equal(("psk_ke", 0L, 0L), (stockedStats.GetProperty("kex").GetString(), stockedStats.GetProperty("control_round_trips").GetInt64(), stockedStats.GetProperty("public_key_ops").GetInt64()));

        // Without --kex the terminal keeps psk_dhe_ke (forward secrecy) on the same market.
        var plain = await DaikoCli.RunAsync(["terminal", "get", url, "--terminal", system.Terminal, "--mode", "resume", "--stats"]);
        Assert.True(plain.ExitCode == 0, plain.ToString());
        Assert.Equal("psk_dhe_ke", JsonDocument.Parse(plain.StandardError.Trim().Split('\n')[^1]).RootElement.GetProperty("kex").GetString());
    }

    [Fact]
    public async Task ResumeWithEarlyData_SendsTheRequestIn0Rtt_WhenTheMarketAllowsIt()
    {
        using var peer = await NginxServer.StartAsync(system.Pki, system.Dir.Path, new TlsPeerOptions { EarlyData = true });

        var result = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{peer.Port}/whoami", "--terminal", system.Terminal, "--mode", "resume", "--early-data", "--stats"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Alice Example", result.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("reused=r", result.StandardOutput, StringComparison.Ordinal);
        var stats = JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
        Assert.True(stats.GetProperty("early_data_accepted").GetBoolean());
        Assert.Equal(1, stats.GetProperty("round_trips").GetInt64());
    }

    [Fact]
    public async Task ResumeWithEarlyData_OnAMarketWithout0Rtt_SendsTheRequestAfterTheHandshake()
    {
        using var peer = await NginxServer.StartAsync(system.Pki, system.Dir.Path);

        var result = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{peer.Port}/whoami", "--terminal", system.Terminal, "--mode", "resume", "--early-data", "--stats"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Alice Example", result.StandardOutput, StringComparison.Ordinal);
        var stats = JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
        Assert.False(stats.GetProperty("early_data_accepted").GetBoolean());
        Assert.True(stats.GetProperty("resumed").GetBoolean());
    }

    [Fact]
    public async Task Prefetch_HasTicketsReadyBeforeTheFirstGet()
    {
        using var peer = await NginxServer.StartAsync(system.Pki, system.Dir.Path);

        var prefetch = await DaikoCli.RunAsync(["terminal", "prefetch", $"https://localhost:{peer.Port}/", "--terminal", system.Terminal, "--count", "2"]);
        var get = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{peer.Port}/whoami", "--terminal", system.Terminal, "--mode", "resume"]);

        Assert.True(prefetch.ExitCode == 0, prefetch.ToString());
        Assert.Matches(@"^[2-8] session ticket\(s\) ready for localhost:\d+ \([1-4] handshake", prefetch.StandardOutput);
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Contains("reused=r", get.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PskKe_OnAMarketThatRefusesIt_FailsClearly()
    {
        using var peer = await NginxServer.StartAsync(system.Pki, system.Dir.Path);
        var result = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{peer.Port}/whoami", "--terminal", system.Terminal, "--mode", "resume", "--kex", "psk_ke"]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("refused the delegated ticket", result.StandardError, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("relay")]
    [InlineData("handoff")]
    [InlineData("resume")]
    [InlineData("assist")]
    public async Task UntrustedMarket_IsRefusedByTheHomeServer(string mode)
    {
        // In assist mode the terminal runs the handshake itself and asks the home server for the verdict.
        var other = TestPki.Create(Path.Combine(system.Dir.Path, "other-" + mode), rootName: "Unknown Market CA");
        using var peer = await OpenSslServer.StartAsync(other, new TlsPeerOptions { RequireClientCertificate = false });
        var result = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{peer.Port}/", "--terminal", system.Terminal, "--mode", mode]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("trusted root", result.StandardError, StringComparison.Ordinal);
        Assert.Empty(result.StandardOutput);
    }

    [Fact]
    public async Task AfterDelegatingInEveryMode_NoFileUnderTheTerminalHoldsTheUsersCertificateOrTheCardsPublicKey()
    {
        using var peer = await NginxServer.StartAsync(system.Pki, system.Dir.Path);
        foreach (var mode in new[] { "resume", "handoff", "relay", "assist" })
        {
            var get = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{peer.Port}/whoami", "--terminal", system.Terminal, "--mode", mode]);
            Assert.True(get.ExitCode == 0, get.ToString());
            Assert.Contains("Alice Example", get.StandardOutput, StringComparison.Ordinal);
        }
        using var certificate = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(system.Dir.Path, "user.pem")));
        var der = certificate.RawData;
        var spki = certificate.PublicKey.ExportSubjectPublicKeyInfo();
        var base64 = Convert.ToBase64String(der);
        var needles = new (string What, byte[] Bytes)[]
        {
            ("the certificate (DER)", der),
            ("the certificate (base64)", System.Text.Encoding.ASCII.GetBytes(base64[..64])),
            ("the certificate (base64, from its middle)", System.Text.Encoding.ASCII.GetBytes(base64[(base64.Length / 2)..(base64.Length / 2 + 48)])),
            ("the card's public key (SPKI DER)", spki),
            ("the card's public key (SPKI base64)", System.Text.Encoding.ASCII.GetBytes(Convert.ToBase64String(spki)[..48])),
            ("the user's name", System.Text.Encoding.UTF8.GetBytes("Alice Example")),
        };

        var files = Directory.EnumerateFiles(system.Terminal, "*", SearchOption.AllDirectories)
            .Where(f => !f.EndsWith(".sock", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(files); // the terminal keeps its enrollment here: the scan looked at something
        foreach (var file in files)
        {
            var bytes = File.ReadAllBytes(file);
            foreach (var (what, needle) in needles)
            {
                Assert.True(bytes.AsSpan().IndexOf(needle) < 0, $"{Path.GetRelativePath(system.Terminal, file)} holds {what}");
            }
        }
        Assert.False(File.Exists(Path.Combine(system.Terminal, "user.pem")));
    }
}

/// <summary>A terminal whose access card is a PKCS#11 token (SoftHSM2 standing in for a smart card), through the CLI.</summary>
public sealed class TokenTerminalProcessesTests : IAsyncLifetime
{
    private readonly HomeAndTerminal _system = new();
    private SoftHsmToken _token = null!;
    private Dictionary<string, string> _environment = null!;

    private string Terminal => Path.Combine(_system.Dir.Path, "token-terminal");

    public async Task InitializeAsync()
    {
        await _system.InitializeAsync();
        _token = SoftHsmToken.Create(Path.Combine(_system.Dir.Path, "smartcard"), "daiko-access", HomeAndTerminal.AccessPin);
        _environment = new Dictionary<string, string> { ["SOFTHSM2_CONF"] = _token.ConfPath };
    }

    public async Task DisposeAsync()
    {
        await DaikoCli.RunAsync(["terminal", "lock", "--terminal", Terminal], environment: _environment);
        await _system.DisposeAsync();
    }

    [Fact]
    public async Task EnrolledOnAToken_TheTerminalDelegates_AndHoldsNoKeyFile()
    {
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(_system.Home, "smartcard-phone"))).StandardOutput.Trim();
        var enroll = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", Terminal, "--home", $"127.0.0.1:{_system.Port}", "--code", code,
            "--pkcs11-module", _token.ModulePath, "--token-label", _token.Label], HomeAndTerminal.AccessPin + "\n", environment: _environment);
        Assert.True(enroll.ExitCode == 0, enroll.ToString());
        Assert.Contains("cannot leave it", enroll.StandardOutput, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(Terminal, "device-key.p8")));

        var unlock = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", Terminal],
            $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n", environment: _environment);
        Assert.True(unlock.ExitCode == 0, unlock.ToString());
        using var market = await NginxServer.StartAsync(_system.Pki, _system.Dir.Path);
        foreach (var mode in new[] { "resume", "relay" })
        {
            var get = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{market.Port}/whoami", "--terminal", Terminal, "--mode", mode], environment: _environment);
            Assert.True(get.ExitCode == 0, get.ToString());
            Assert.Contains("Alice Example", get.StandardOutput, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Enrolling_WithAPinTheTokenRefuses_FailsClearly_AndLeavesNothingBehind()
    {
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(_system.Home, "smartcard-phone"))).StandardOutput.Trim();

        var enroll = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", Terminal, "--home", $"127.0.0.1:{_system.Port}", "--code", code,
            "--pkcs11-module", _token.ModulePath, "--token-label", _token.Label], "0000\n", environment: _environment);

        Assert.Equal(1, enroll.ExitCode);
        Assert.Contains("does not open the token", enroll.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(Terminal, "device-key.token.json")));
    }
}
