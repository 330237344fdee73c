using System.Text.Json;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// Typical mistakes, each made with the real <c>daiko</c> process against a real home server and terminal:
/// each ends in one plain sentence on stderr and exit 2 (bad usage) or 1 (failure), never 70 (a bug).
/// </summary>
public sealed class CliMistakesTests(HomeAndTerminal system) : IClassFixture<HomeAndTerminal>
{
    private const string NameRule = "a device name is 1 to 64 characters, without control characters, '/' or '\\', and without spaces at either end";

    private sealed record Mistake(string[] Args, int Exit, string Sentence, string? Stdin = null, string? MustNotExist = null, string? NotSaid = null);

    private IEnumerable<Mistake> Table()
    {
        var h = system.Home;
        var t = system.Terminal;
        var missing = Path.Combine(system.Dir.Path, "mistyped");
        var closed = Loopback.FreePort();
        var leaf = system.Pki.IssueServer("leaf", "market.example").CertificatePath;
        // A site directory as far as the command line can tell (its site.json is all a validator reads).
        var site = Path.Combine(system.Dir.Path, "site-shape");
        Directory.CreateDirectory(site);
        File.WriteAllText(Path.Combine(site, "site.json"), "{}");
        var terminalShape = Path.Combine(system.Dir.Path, "terminal-shape");
        Directory.CreateDirectory(terminalShape);
        File.WriteAllText(Path.Combine(terminalShape, "terminal.json"), "{}");
        return
        [
            // typos: one suggestion, short usage, exit 2
            new(["terminl"], 2, "has no command 'terminl'; did you mean 'daiko terminal'?"),
            new(["terminal", "gett"], 2, "did you mean 'daiko terminal get'?"),
            new(["home", "device", "ad", "--home", h, "--name", "x"], 2, "did you mean 'daiko home device add'?"),
            new(["terminal", "get", "https://market.example/", "--terminal", t, "--mdoe", "relay"], 2, "did you mean '--mode'?"),
            // device names: they reach the server log, the audit log and the console
            new(["home", "device", "add", "--home", h, "--name", "bad name/with slash"], 2, NameRule),
            new(["home", "device", "add", "--home", h, "--name", "forged\n2026-01-01T00:00:00Z daiko: unlock: crypto-ready"], 2, NameRule),
            new(["home", "device", "add", "--home", h, "--name", " phone"], 2, NameRule),
            new(["home", "device", "add", "--home", h, "--name", ""], 2, NameRule),
            new(["home", "device", "add", "--home", h, "--name", new string('x', 65)], 2, NameRule),
            new(["home", "device", "policy", "--home", h, "--name", "back\\slash", "--modes", "relay"], 2, NameRule),
            new(["home", "device", "policy", "--home", h, "--name", "ghost"], 1, "no device named 'ghost' (see 'daiko home device list')"),
            // values that are not what the option takes
            new(["terminal", "get", "--terminal", t], 2, "'daiko terminal get' needs URL"),
            new(["terminal", "get", "https://market.example/", "--terminal", t, "--mode", "fast"], 2, "fast"),
            new(["terminal", "get", "https://market.example/", "--terminal", t, "--mode", "handoff", "--kex", "psk_ke"], 2, "--kex applies to resume and auto modes only"),
            new(["terminal", "get", "ftp://market.example/", "--terminal", t], 2, "takes an https URL; Daiko does not speak ftp"),
            new(["terminal", "get", "market.example", "--terminal", t], 2, "takes an https URL"),
            new(["terminal", "prefetch", "https://market.example/", "--terminal", t, "--count", "9"], 2, "--count must be 0 to 8"),
            new(["terminal", "forward", "--terminal", t, "--listen", "18081", "--target", "market.example:443"], 2, "--listen takes HOST:PORT"),
            new(["terminal", "forward", "--terminal", t, "--listen", "127.0.0.1:18081", "--target", "https://market.example:443/"], 2, "--target takes HOST:PORT, not a URL"),
            new(["terminal", "forward", "--terminal", t, "--listen", "127.0.0.1:18081", "--target", "127.0.0.1"], 2, "has no port"),
            new(["terminal", "forward", "--terminal", t, "--listen", "127.0.0.1:18081", "--target", "market.example:99999"], 2, "port from 1 to 65535"),
            new(["terminal", "forward", "--terminal", t, "--listen", "market.example:8080", "--target", "market.example:443"], 2, "--listen takes a local IP address"),
            new(["terminal", "enroll", "--terminal", Path.Combine(system.Dir.Path, "t-a"), "--home", "127.0.0.1", "--code", "X"], 2, "--home takes HOST:PORT", MustNotExist: Path.Combine(system.Dir.Path, "t-a")),
            new(["terminal", "enroll", "--terminal", Path.Combine(system.Dir.Path, "t-b"), "--home", "https://home.example:7443/", "--code", "X"], 2, "not a URL", MustNotExist: Path.Combine(system.Dir.Path, "t-b")),
            new(["terminal", "wallet", "pay", "--terminal", t, "--market", "http://market.example/", "--order", "1"], 2, "Daiko does not speak http"),
            new(["terminal", "wallet", "refill", "--terminal", t, "--bank", "https://bank.example/", "--amount", "-5"], 2, "--amount must be more than 0"),
            new(["home", "serve", "--home", h, "--listen", "nonsense"], 2, "--listen takes HOST:PORT"),
            new(["home", "serve", "--home", h, "--proxy-from", "127.0.0.1"], 2, "--proxy-from goes with --proxy-protocol"),
            new(["home", "serve", "--home", h, "--proxy-protocol", "--proxy-from", "balancer.example"], 2, "'balancer.example' is neither an IP address nor a CIDR block"),
            new(["host", "serve", "--site", site, "--listen", "127.0.0.1:7443", "--proxy-protocol", "--proxy-from", "10.0.0.0/33"], 2, "'10.0.0.0/33' is neither an IP address nor a CIDR block"),
            new(["host", "serve", "--site", site, "--listen", "127.0.0.1:7443", "--console", "0.0.0.0:9000"], 2,
                "the console at 0.0.0.0:9000 is reachable from the network: give it TLS (--console-cert PEM --console-key PEM), or bind it to 127.0.0.1"),
            new(["host", "serve", "--site", site, "--listen", "127.0.0.1:7443", "--console", "127.0.0.1:9000", "--console-cert", leaf], 2, "--console-cert and --console-key go together"),
            new(["home", "mail", "set", "--home", h, "--smtp", "smtp.example", "--from", "a@example.org", "--to", "b@example.org"], 2, "--smtp takes HOST:PORT"),
            new(["home", "mail", "set", "--home", h, "--smtp", "smtp.example:25", "--from", "nobody", "--to", "b@example.org"], 2, "--from takes a mail address"),
            new(["terminal", "unlock", "--terminal", t], 2, "expected the PIN1 on standard input", Stdin: HomeAndTerminal.AccessPin + "\n"),
            // a path that holds no home or no terminal: refused, nothing created
            new(["home", "device", "add", "--home", missing, "--name", "phone"], 2, $"no home server in {missing}", MustNotExist: missing),
            new(["home", "trust", "add", "--home", missing, "--ca", system.Pki.RootPath], 2, $"no home server in {missing}", MustNotExist: missing),
            new(["home", "device", "list", "--home", missing], 2, $"no home server in {missing}", MustNotExist: missing),
            new(["home", "card", "status", "--home", missing, "--json"], 2, $"no home server in {missing}", MustNotExist: missing),
            new(["home", "mail", "set", "--home", missing, "--smtp", "smtp.example:25", "--from", "a@example.org", "--to", "b@example.org"], 2, $"no home server in {missing}", MustNotExist: missing),
            new(["terminal", "get", "https://market.example/", "--terminal", missing], 2, $"no access card in {missing}", MustNotExist: missing),
            new(["terminal", "lock", "--terminal", missing], 2, $"no access card in {missing}", MustNotExist: missing),
            new(["terminal", "wallet", "balance", "--terminal", missing], 2, $"no access card in {missing}", MustNotExist: missing),
            new(["home", "trust", "add", "--home", h, "--ca", Path.Combine(system.Dir.Path, "nothing.pem")], 2, "there is no file"),
            new(["home", "cert", "import", "--home", h, "--cert", Path.Combine(system.Dir.Path, "nothing.pem")], 2, "there is no file"),
            new(["tls", "get", "https://market.example/", "--resume-from", Path.Combine(system.Dir.Path, "no-ticket.cbor")], 1, "there is no ticket file"),
            // failures: exit 1
            new(["home", "trust", "add", "--home", h, "--ca", leaf], 1, "is not a CA certificate"),
            new(["home", "trust", "remove", "--home", h, "--thumbprint", "deadbeef00"], 1, "no single added root"),
            new(["home", "serve", "--home", h, "--listen", $"127.0.0.1:{system.Port}"], 1, "another home server is already serving"),
            new(["terminal", "forward", "--terminal", t, "--listen", $"127.0.0.1:{system.Port}", "--target", "market.example:443"], 1, "already in use"),
            new(["home", "init", "--home", Path.Combine(system.Dir.Path, "h-short")], 1, "PIN1 must be", Stdin: "12\n2222\nadmin-code-123\n", MustNotExist: Path.Combine(system.Dir.Path, "h-short", "card", "card.json")),
            new(["home", "init", "--home", h], 2, "holds a home card already", Stdin: "1111\n2222\nadmin-code-123\n"),
            new(["home", "init", "--home", Path.Combine(system.Dir.Path, "h-dn"), "--subject", "not a dn"], 2, "--subject takes a distinguished name", Stdin: "1111\n2222\nadmin-code-123\n", MustNotExist: Path.Combine(system.Dir.Path, "h-dn")),
            new(["home", "init", "--home", Path.Combine(system.Dir.Path, "h-so"), "--pkcs11-module", Path.Combine(system.Dir.Path, "none.so")], 1, "PKCS#11 module not found", Stdin: "1111\n2222\nadmin-code-123\n", MustNotExist: Path.Combine(system.Dir.Path, "h-so")),
            new(["home", "init", "--home", terminalShape], 2, "holds an enrolled terminal: a home server needs a directory of its own", Stdin: "1111\n2222\nadmin-code-123\n", MustNotExist: Path.Combine(terminalShape, "card")),
            new(["terminal", "enroll", "--terminal", h, "--home", "127.0.0.1:7443", "--code", "X"], 2, "holds a home server: a terminal needs a directory of its own", MustNotExist: Path.Combine(h, "terminal.json")),
            new(["host", "device", "list", "--site", missing, "--owner", "alice"], 2, $"no hosted site in {missing}", MustNotExist: missing),
            new(["tls", "get", "https://market.example/", "--ca", Path.Combine(system.Dir.Path, "nothing.pem")], 2, "--ca: there is no file"),
            new(["tls", "get", "https://market.example/", "--timeout", "0"], 2, "--timeout must be 1 to 3600 seconds (got 0)"),
            new(["tls", "get", "https://market.example/", "--cert", leaf], 2, "--cert and --key go together"),
            new(["terminal", "forward", "--terminal", t, "--listen", "0.0.0.0:18082", "--target", "market.example:443"], 2, "--listen 0.0.0.0:18082 is not a loopback address"),
            new(["home", "cert", "import", "--home", h, "--cert", Path.Combine(h, "user.csr")], 1, "is the certificate request (the CSR)"),
            new(["terminal", "get", "https://market.example/", "--terminal", t, "--timeout", "0"], 2, "--timeout must be 1 to 3600 seconds (got 0)"),
            new(["terminal", "get", "https://market.example/", "--terminal", t, "--kex", "foo"], 2, "--kex takes one of"),
            new(["terminal", "get", "https://market.example/", "--terminal", t, "--mode", "teleport"], 2, "--mode takes one of auto, resume, handoff, relay, assist (got 'teleport')"),
            new(["terminal", "wallet", "refill", "--terminal", t, "--bank", "https://bank.example/", "--amount", "1.5"], 2, "--amount takes a whole number (got '1.5')"),
            new(["terminal", "prefetch", "https://market.example/", "--terminal", t, "--count", "abc"], 2, "--count takes a whole number (got 'abc')"),
            new(["home", "device", "policy", "--home", h, "--name", "phone", "--max-tickets", "abc"], 2, "--max-tickets takes a whole number (got 'abc')"),
            new(["terminal", "get", $"https://127.0.0.1:{closed}/", "--terminal", t, "--mode", "assist"], 1, "nothing is listening there"),
            // The home server's refusal is said as it is, not as a market that could not be reached.
            new(["terminal", "wallet", "pay", "--terminal", t, "--market", "https://10.255.255.1:8443/", "--order", "1"], 1, "daiko: policy-refused: 10.255.255.1 resolves to a private address", NotSaid: "could not be reached"),
        ];
    }

    [Fact]
    public async Task EveryMistake_IsOnePlainSentence_WithExitOneOrTwo()
    {
        var problems = new List<string>();
        var table = Table().ToList();
        Assert.True(table.Count >= 30);
        foreach (var m in table)
        {
            var result = await DaikoCli.RunAsync(m.Args, m.Stdin ?? "");
            var command = "daiko " + string.Join(' ', m.Args);
            var sentences = result.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("daiko: ", StringComparison.Ordinal)).ToList();
            if (result.ExitCode != m.Exit) problems.Add($"{command}: exit {result.ExitCode}, expected {m.Exit}\n{result.StandardError}");
            else if (!sentences.Any(l => l.Contains(m.Sentence, StringComparison.Ordinal))) problems.Add($"{command}: no 'daiko: ' line says '{m.Sentence}':\n{result.StandardError}");
            else if (result.StandardError.Contains("   at ", StringComparison.Ordinal) || result.StandardError.Contains("(Parameter '", StringComparison.Ordinal)
                || result.StandardError.Contains("unexpected error", StringComparison.Ordinal) || result.StandardError.Contains("Exception", StringComparison.Ordinal))
            {
                problems.Add($"{command}: .NET text in the message:\n{result.StandardError}");
            }
            if (m.MustNotExist is { } path && (Directory.Exists(path) || File.Exists(path))) problems.Add($"{command}: left {path} behind");
            if (m.NotSaid is { } notSaid && result.StandardError.Contains(notSaid, StringComparison.Ordinal)) problems.Add($"{command}: says '{notSaid}':\n{result.StandardError}");
        }
        Assert.True(problems.Count == 0, string.Join("\n\n", problems));
    }

    [Fact]
    public async Task AHomeServedBeforeItsCertificateIsImported_SaysWhatIsMissingAndHowToImportIt()
    {
        var home = Path.Combine(system.Dir.Path, "h-no-cert");
        await HomeAndTerminal.Ok(["home", "init", "--home", home], "1111\n2222\nadmin-code-123\n");

        using var serve = new ExternalProcess("dotnet", [DaikoCli.DllPath, "home", "serve", "--home", home, "--listen", $"127.0.0.1:{Loopback.FreePort()}"]);

        await serve.WaitForOutputAsync($"the home card holds no certificate yet: every delegation is refused until the owner imports the one issued for {home}/user.csr ('daiko home cert import --home {home} --cert PEM')", TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task FailedEnroll_LeavesNoTerminalDirectory()
    {
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(system.Home, "late-phone"))).StandardOutput.Trim();
        var unreachable = Path.Combine(system.Dir.Path, "never-reached");
        var refused = Path.Combine(system.Dir.Path, "never-enrolled");

        var down = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", unreachable, "--home", $"127.0.0.1:{Loopback.FreePort()}", "--code", code], HomeAndTerminal.AccessPin + "\n");
        await HomeAndTerminal.Ok(["terminal", "enroll", "--terminal", Path.Combine(system.Dir.Path, "late-phone"), "--home", $"127.0.0.1:{system.Port}", "--code", code], HomeAndTerminal.AccessPin + "\n");
        // The same one-time code again: the home server refuses it after the access card was made.
        var reused = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", refused, "--home", $"127.0.0.1:{system.Port}", "--code", code], HomeAndTerminal.AccessPin + "\n");

        Assert.True(down.ExitCode == 1, down.ToString());
        Assert.Contains("unreachable", down.StandardError, StringComparison.Ordinal);
        Assert.True(reused.ExitCode == 1, reused.ToString());
        Assert.False(Directory.Exists(unreachable), $"a failed enroll left {unreachable}");
        Assert.False(Directory.Exists(refused), $"a refused enroll left {refused}");
    }

    [Fact]
    public async Task ASecondCodeForAName_ReplacesTheFirst_WhoseHolderIsToldWhy_AndDeviceListShowsItPending()
    {
        var first = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(system.Home, "spare"))).StandardOutput.Trim();
        var second = await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(system.Home, "spare"));
        Assert.Contains("this replaces the enrollment code given earlier for spare; that one no longer works", second.StandardError, StringComparison.Ordinal);

        var listed = JsonDocument.Parse((await HomeAndTerminal.Ok(["home", "device", "list", "--home", system.Home, "--json"])).StandardOutput).RootElement;
        Assert.Single(listed.GetProperty("pending").EnumerateArray(), p => p.GetProperty("name").GetString() == "spare" && p.GetProperty("expires").GetDateTimeOffset() > DateTimeOffset.UtcNow);
        var human = await HomeAndTerminal.Ok(["home", "device", "list", "--home", system.Home]);
        Assert.Contains(human.StandardOutput.Split('\n'), l => l.StartsWith("spare ", StringComparison.Ordinal) && l.Contains("pending: an enrollment code valid until", StringComparison.Ordinal));
        var dir = Path.Combine(system.Dir.Path, "spare-first");
        var refused = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", dir, "--home", $"127.0.0.1:{system.Port}", "--code", first], HomeAndTerminal.AccessPin + "\n");

        Assert.True(refused.ExitCode == 1, refused.ToString());
        Assert.Contains("the enrollment code was replaced by a newer one for the same device", refused.StandardError, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir), $"a refused enroll left {dir}");
    }

    [Fact]
    public async Task FailedUnlock_LeavesNoAgentRunning()
    {
        var code = (await HomeAndTerminal.Ok(LoopbackMarkets.DeviceAdd(system.Home, "tablet"))).StandardOutput.Trim();
        var dir = Path.Combine(system.Dir.Path, "tablet");
        await HomeAndTerminal.Ok(["terminal", "enroll", "--terminal", dir, "--home", $"127.0.0.1:{system.Port}", "--code", code], HomeAndTerminal.AccessPin + "\n");

        var result = await DaikoCli.RunAsync(["terminal", "unlock", "--terminal", dir], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\nwrong-pin-two\n");

        Assert.True(result.ExitCode == 1, result.ToString());
        // The home server says why in its log, and never logs the PIN.
        await system.Server.WaitForOutputAsync("unlock refused (wrong-pin2)", TimeSpan.FromSeconds(10));
        Assert.Contains(": unlock: wrong PIN2", system.Server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong-pin-two", system.Server.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir, "agent.sock")) || File.Exists(Path.Combine(dir, "agent.pid")), "a failed unlock left the terminal agent running");
        var get = await DaikoCli.RunAsync(["terminal", "wallet", "balance", "--terminal", dir]);
        Assert.Equal(1, get.ExitCode);
        Assert.Contains("locked", get.StandardError, StringComparison.Ordinal);
        // The right PINs still work (and reset the home card's count of wrong PIN2s).
        await HomeAndTerminal.Ok(["terminal", "unlock", "--terminal", dir], $"{HomeAndTerminal.AccessPin}\n{HomeAndTerminal.Pin1}\n{HomeAndTerminal.Pin2}\n");
        await HomeAndTerminal.Ok(["terminal", "lock", "--terminal", dir]);
        await system.Server.WaitForOutputAsync(": lock: remote-access-wait", TimeSpan.FromSeconds(10));
        Assert.Contains(": unlock: crypto-ready", system.Server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain(HomeAndTerminal.Pin2 + "\n", system.Server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TrustRoots_AddListRemove_AsJsonObjects()
    {
        var other = TestPki.Create(Path.Combine(system.Dir.Path, "other-pki"), rootName: "Other Market Root");

        var added = JsonDocument.Parse((await HomeAndTerminal.Ok(["home", "trust", "add", "--home", system.Home, "--ca", other.RootPath, "--json"])).StandardOutput).RootElement;
        var thumbprint = added.GetProperty("added")[0].GetProperty("thumbprint").GetString()!;
        var listed = JsonDocument.Parse((await HomeAndTerminal.Ok(["home", "trust", "list", "--home", system.Home, "--json"])).StandardOutput).RootElement;
        Assert.Contains(listed.GetProperty("roots").EnumerateArray(), r => r.GetProperty("thumbprint").GetString() == thumbprint && r.GetProperty("subject").GetString()!.Contains("Other Market Root", StringComparison.Ordinal));
        await HomeAndTerminal.Ok(["home", "trust", "remove", "--home", system.Home, "--thumbprint", thumbprint[..10]]);
        var after = JsonDocument.Parse((await HomeAndTerminal.Ok(["home", "trust", "list", "--home", system.Home, "--json"])).StandardOutput).RootElement;
        Assert.DoesNotContain(after.GetProperty("roots").EnumerateArray(), r => r.GetProperty("thumbprint").GetString() == thumbprint);
        Assert.NotEmpty(after.GetProperty("roots").EnumerateArray());
    }

    [Fact]
    public async Task AMarketThatNeverAnswers_GetsAProgressLineAfterTwoSeconds()
    {
        using var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start();
        var port = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var get = DaikoCli.Start(["terminal", "get", $"https://127.0.0.1:{port}/", "--terminal", system.Terminal, "--mode", "assist"]);
        using var accepted = await silent.AcceptTcpClientAsync().WaitAsync(TimeSpan.FromSeconds(30));

        await get.WaitForOutputAsync($"127.0.0.1:{port} has not answered within 2 s", TimeSpan.FromSeconds(30));
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(2), $"the progress line came after {clock.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task MailSet_WritesWhatTheHomeServerReads()
    {
        await HomeAndTerminal.Ok(["home", "mail", "set", "--home", system.Home, "--smtp", "127.0.0.1:2525", "--from", "daiko@home.example", "--to", "alice@example.org"]);

        var mail = JsonDocument.Parse(File.ReadAllText(Path.Combine(system.Home, "mail.json"))).RootElement;
        Assert.Equal("127.0.0.1", mail.GetProperty("smtp_host").GetString());
        Assert.Equal(2525, mail.GetProperty("smtp_port").GetInt32());
        Assert.Equal("alice@example.org", mail.GetProperty("to").GetString());
    }
}
