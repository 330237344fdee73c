using System.Diagnostics;
using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Daiko.Bench.Reporting;
using Daiko.Cards;
using Daiko.Protocol;
using Daiko.TestSupport;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Daiko.Tls;

namespace Daiko.Bench.TerminalCost;

/// <summary>
/// The cost bound of F8 ([0090]) measured: for each way to reach a market (direct mTLS through
/// Daiko.Tls, SslStream and openssl s_client; Daiko's resume, handoff, relay and assist), the
/// terminal's bytes, round trips, public-key operations, CPU time and time to the first response byte,
/// over an emulated slow link, for a first and a cached session. The home server runs as its own
/// process (its CPU is not the terminal's); the market is nginx with client certificates and tickets.
/// </summary>
public static class TerminalCostBenchmark
{
    /// <param name="WallMs">A whole process's wall time, its start-up included (CLI and openssl rows; NaN for in-process rows).</param>
    private sealed record Sample(double BytesSent, double BytesReceived, double RoundTrips, double PublicKeyOps, double CpuMs, double TtfbMs, double ControlBytes, double WallMs = double.NaN);

    public static async Task<int> RunAsync(string[] args)
    {
        var quick = args.Contains("--quick");
        var runs = IntArg(args, "--runs", quick ? 3 : 15);
        var rttMs = IntArg(args, "--rtt-ms", quick ? 20 : 100);
        var kbps = IntArg(args, "--kbps", 1000);
        var output = StringArg(args, "--out", Path.Combine(FindRepoRoot(), "bench", "results"));
        Directory.CreateDirectory(output);
        Console.WriteLine($"terminal cost: {runs} runs per way, link {rttMs} ms RTT, {kbps} kbit/s");

        using var dir = new TempDirectory("daiko-bench");
        var pki = TestPki.Create(Path.Combine(dir.Path, "pki"));
        using var nginx = await NginxServer.StartAsync(pki, dir.Path);
        using var openssl = await OpenSslServer.StartAsync(pki, new TlsPeerOptions { AllowPskKe = true });
        var home = Path.Combine(dir.Path, "home");
        var terminalDir = Path.Combine(dir.Path, "terminal");
        await SetUpHomeAsync(pki, home, dir.Path);
        var homePort = Loopback.FreePort();
        using var server = DaikoCli.Start(["home", "serve", "--home", home, "--listen", $"127.0.0.1:{homePort}"]);
        await server.WaitForOutputAsync("home server listening", TimeSpan.FromSeconds(30));
        var code = (await DaikoCli.RunAsync(LoopbackMarkets.DeviceAdd(home, "bench"))).StandardOutput.Trim();

        var rtt = TimeSpan.FromMilliseconds(rttMs);
        // The links run in processes of their own: relaying is the network's work, not the terminal's CPU.
        using var marketLink = await LinkProcess.StartAsync(nginx.Port, rtt, kbps);
        using var pskKeLink = await LinkProcess.StartAsync(openssl.Port, rtt, kbps);
        using var homeLink = await LinkProcess.StartAsync(homePort, rtt, kbps);
        _homeLink = homeLink;
        await TerminalClient.EnrollAsync(terminalDir, $"127.0.0.1:{homeLink.Port}", code, "432100", createAccessCard: (d, p) => AccessCard.Create(d, p, Daiko.Cards.Access.AccessCardKdf.ForTests));
        using var access = AccessCard.Open(terminalDir);
        access.Unlock("432100");
        await using var control = await TerminalClient.ConnectAsync(terminalDir, access.DeviceKey, CancellationToken.None);
        await new HomeControl(control).UnlockAsync("1111", "2222", CancellationToken.None);

        var results = new List<(string Way, string Session, Distribution[] Stats)>();
        async Task Measure(string way, string session, Func<Task<Sample>> once, bool countsUnknown = false, Func<Task>? prepare = null)
        {
            var samples = new List<Sample>();
            if (prepare is not null) await prepare();
            await once(); // warm-up: JIT and caches, not measured
            for (var i = 0; i < runs; i++)
            {
                if (prepare is not null) await prepare(); // not measured: Timed starts its counters after it
                var sample = await once();
                samples.Add(countsUnknown ? sample with { RoundTrips = double.NaN, PublicKeyOps = double.NaN } : sample);
            }
            results.Add((way, session, [
                Distribution.Of(samples.Select(s => s.BytesSent + s.ControlBytes).ToList()),
                Distribution.Of(samples.Select(s => s.BytesReceived).ToList()),
                Distribution.Of(samples.Select(s => s.RoundTrips).ToList()),
                Distribution.Of(samples.Select(s => s.PublicKeyOps).ToList()),
                Distribution.Of(samples.Select(s => s.CpuMs).ToList()),
                Distribution.Of(samples.Select(s => s.TtfbMs).ToList()),
                Distribution.Of(samples.Select(s => s.WallMs).ToList()),
            ]));
            Console.WriteLine($"  {way,-22} {session,-7} done");
        }

        var credential = SoftwareSigner.LoadCredential(pki.User.CertificatePath, pki.User.KeyPath);
        SessionTicket? directTicket = null;
        await Measure("direct Daiko.Tls", "first", () => Timed(marketLink, async counters =>
        {
            var tls = await TlsClient.ConnectAsync("127.0.0.1", marketLink.Port, DirectOptions(pki, counters, credential), CancellationToken.None);
            var first = await GetFirstByteAsync(tls);
            directTicket = tls.Tickets.FirstOrDefault() ?? directTicket;
            await tls.DisposeAsync();
            return (first, counters);
        }));
        await Measure("direct Daiko.Tls", "cached", () => Timed(marketLink, async counters =>
        {
            var tls = await TlsClient.ConnectAsync("127.0.0.1", marketLink.Port, DirectOptions(pki, counters, credential) with { ResumptionTicket = directTicket }, CancellationToken.None);
            var first = await GetFirstByteAsync(tls);
            directTicket = tls.Tickets.FirstOrDefault() ?? directTicket;
            await tls.DisposeAsync();
            return (first, counters);
        }));
        // Resumption off: SslStream would otherwise resume from its second connection on (nginx: reused=r).
        await SslStreamPeer.RequireFullHandshakesAsync(pki, nginx.Port);
        await Measure("direct SslStream", "first", () => Timed(marketLink, async counters =>
        {
            var ssl = await SslStreamPeer.ConnectAsync(pki, marketLink.Port, resume: false);
            var first = await GetFirstByteAsync(ssl);
            await ssl.DisposeAsync();
            return (first, counters);
        }), countsUnknown: true);
        await Measure("direct openssl s_client", "first", () => OpenSslClientAsync(pki, marketLink));
        // The CLI's own start-up, and a direct mTLS fetch by the CLI (no agent, no delegation): the peers
        // for the CLI+agent rows' process wall time, which includes the same .NET start-up and JIT.
        await Measure("CLI start-up alone (daiko --version)", "-", () => CliWallAsync(["--version"]));
        await Measure("direct daiko tls get (CLI)", "first", () => CliWallAsync(["tls", "get", $"https://127.0.0.1:{marketLink.Port}/whoami",
            "--ca", pki.RootPath, "--cert", pki.User.CertificatePath, "--key", pki.User.KeyPath, "--stats"], marketLink));

        var connector = new DelegatedConnector(control) { TerminalRoute = (_, _) => ("127.0.0.1", marketLink.Port) };
        // A first session finds no ticket for (device, market) at the home server, which must run a full
        // handshake with the market first; a cached one finds a ticket fetched ahead of need.
        async Task EmptyHomeCache()
        {
            await Task.Delay(300); // let a background refill from the previous run finish, then drop it
            await new HomeControl(control).LockAsync(CancellationToken.None);
            await new HomeControl(control).UnlockAsync("1111", "2222", CancellationToken.None);
        }
        async Task TicketReady() => await connector.PrefetchAsync("localhost", nginx.Port, minimum: 1);
        foreach (var (way, mode, session, prepare) in new (string, DelegationMode, string, Func<Task>?)[]
        {
            ("daiko resume psk_dhe_ke", DelegationMode.Resume, "first", EmptyHomeCache),
            ("daiko resume psk_dhe_ke", DelegationMode.Resume, "cached", TicketReady),
            ("daiko handoff", DelegationMode.Handoff, "first", null),
            ("daiko relay", DelegationMode.Relay, "first", null),
            ("daiko assist", DelegationMode.Assist, "first", null),
        })
        {
            await Measure(way, session, () => Timed(marketLink, async counters =>
            {
                var delegated = await connector.ConnectAsync("localhost", nginx.Port, mode);
                var first = await GetFirstByteAsync(delegated.Stream);
                await delegated.Stream.DisposeAsync();
                return (first, delegated.Counters);
            }), prepare: prepare);
        }
        await Measure("direct Daiko.Tls (openssl market)", "first", () => Timed(pskKeLink, async counters =>
        {
            var tls = await TlsClient.ConnectAsync("127.0.0.1", pskKeLink.Port, DirectOptions(pki, counters, credential), CancellationToken.None);
            var first = await GetFirstByteAsync(tls, "/");
            await tls.DisposeAsync();
            return (first, counters);
        }));
        var pskKeConnector = new DelegatedConnector(control) { TerminalRoute = (_, _) => ("127.0.0.1", pskKeLink.Port) };
        await Measure("daiko resume psk_ke (openssl market)", "first", () => Timed(pskKeLink, async counters =>
        {
            var session = await pskKeConnector.ConnectAsync("localhost", openssl.Port, DelegationMode.Resume, PskKeyExchangeMode.PskKe);
            var first = await GetFirstByteAsync(session.Stream, "/");
            await session.Stream.DisposeAsync();
            return (first, session.Counters);
        }), prepare: EmptyHomeCache);

        // A market that speaks only TLS 1.2 (nginx with ssl_protocols TLSv1.2): resume hands the terminal
        // an RFC 5077 ticket and master secret, and the abbreviated handshake needs no public-key operation.
        using var nginx12 = await NginxServer.StartAsync(pki, dir.Path, new TlsPeerOptions { Versions = "1.2" });
        using var tls12Link = await LinkProcess.StartAsync(nginx12.Port, rtt, kbps);
        await Measure("direct Daiko.Tls (TLS 1.2 market)", "first", () => Timed(tls12Link, async counters =>
        {
            var tls = await TlsClient.ConnectAsync("127.0.0.1", tls12Link.Port, DirectOptions(pki, counters, credential) with { Versions = TlsVersions.Both }, CancellationToken.None);
            var first = await GetFirstByteAsync(tls);
            await tls.DisposeAsync();
            return (first, counters);
        }));
        var tls12Connector = new DelegatedConnector(control) { TerminalRoute = (_, _) => ("127.0.0.1", tls12Link.Port) };
        async Task Tls12TicketReady() => await tls12Connector.PrefetchAsync("localhost", nginx12.Port, minimum: 1);
        foreach (var (session, prepare) in new (string, Func<Task>)[] { ("first", EmptyHomeCache), ("cached", Tls12TicketReady) })
        {
            await Measure("daiko resume (TLS 1.2 market)", session, () => Timed(tls12Link, async counters =>
            {
                var delegated = await tls12Connector.ConnectAsync("localhost", nginx12.Port, DelegationMode.Resume);
                var first = await GetFirstByteAsync(delegated.Stream);
                await delegated.Stream.DisposeAsync();
                return (first, delegated.Counters);
            }), prepare: prepare);
        }

        // What a user runs: `daiko terminal get` through the terminal agent, the second command after
        // unlock (the agent's one control channel is open), and resume from the agent's local ticket stock
        // (`terminal prefetch`), with and without 0-RTT. Round trips and public-key operations are the
        // --stats totals (market and control channel, CLI and agent); bytes are counted by the links;
        // "first byte ms" is the CLI's elapsed_ms (whole command, body included, process start excluded).
        await Must(["terminal", "unlock", "--terminal", terminalDir], "432100\n1111\n2222\n");
        using var nginxEarly = await NginxServer.StartAsync(pki, dir.Path, new TlsPeerOptions { EarlyData = true });
        using var earlyLink = await LinkProcess.StartAsync(nginxEarly.Port, rtt, kbps);
        // nginx allowing psk_ke (OpenSSL's AllowNoDHEKEX), serving the same short page: the resumption goals' market.
        using var nginxPskKe = await NginxServer.StartAsync(pki, dir.Path, new TlsPeerOptions { AllowPskKe = true });
        using var pskKeNginxLink = await LinkProcess.StartAsync(nginxPskKe.Port, rtt, kbps);
        // The same, with a server-side session cache instead of stateless tickets (ssl_session_tickets off):
        // OpenSSL then issues short stateful tickets, and a resumption no longer carries the client certificate.
        using var nginxCache = await NginxServer.StartAsync(pki, dir.Path, new TlsPeerOptions { AllowPskKe = true, StatefulTickets = true });
        using var cacheLink = await LinkProcess.StartAsync(nginxCache.Port, rtt, kbps);
        await Measure(DirectSessionCache, "first", () => Timed(cacheLink, async counters =>
        {
            var tls = await TlsClient.ConnectAsync("127.0.0.1", cacheLink.Port, DirectOptions(pki, counters, credential), CancellationToken.None);
            var first = await GetFirstByteAsync(tls);
            await tls.DisposeAsync();
            return (first, counters);
        }));
        Func<Task> Stocked(int port) => async () =>
        {
            await Task.Delay(500); // the refill after the previous run's ticket, off the clock
            await Must(["terminal", "prefetch", $"https://localhost:{port}/", "--terminal", terminalDir, "--count", "1"]);
        };
        foreach (var (way, link, port, path, cliArgs, prepare) in new (string, LinkProcess, int, string, string[], Func<Task>?)[]
        {
            ("daiko CLI+agent relay", marketLink, nginx.Port, "/whoami", ["--mode", "relay"], null),
            ("daiko CLI+agent handoff", marketLink, nginx.Port, "/whoami", ["--mode", "handoff"], null),
            ("daiko CLI+agent resume psk_dhe_ke, ticket from home", marketLink, nginx.Port, "/whoami", ["--mode", "resume", "--kex", "psk_dhe_ke"], TicketReady),
            ("daiko CLI+agent resume psk_dhe_ke, local stock", marketLink, nginx.Port, "/whoami", ["--mode", "resume", "--kex", "psk_dhe_ke"], Stocked(nginx.Port)),
            ("daiko CLI+agent resume psk_dhe_ke + 0-RTT, local stock", earlyLink, nginxEarly.Port, "/whoami", ["--mode", "resume", "--kex", "psk_dhe_ke", "--early-data"], Stocked(nginxEarly.Port)),
            ("daiko CLI+agent resume psk_ke, local stock (openssl market)", pskKeLink, openssl.Port, "/", ["--mode", "resume", "--kex", "psk_ke"], Stocked(openssl.Port)),
            ("daiko CLI+agent resume psk_ke, local stock (nginx allowing psk_ke)", pskKeNginxLink, nginxPskKe.Port, "/whoami", ["--mode", "resume", "--kex", "psk_ke"], Stocked(nginxPskKe.Port)),
            ("daiko CLI+agent resume psk_ke, local stock (nginx session cache)", cacheLink, nginxCache.Port, "/whoami", ["--mode", "resume", "--kex", "psk_ke"], Stocked(nginxCache.Port)),
        })
        {
            await Measure(way, prepare is null ? "second" : "cached", () => CliGetAsync(link, $"https://localhost:{port}{path}", terminalDir, cliArgs), prepare: prepare);
        }
        var sessionFile = Path.Combine(dir.Path, "s_client.session");
        // OpenSSL's own resumption sends the very request the CLI sends for the same URL: like for like,
        // the rows differ only in what TLS costs.
        foreach (var (way, link, url) in new (string, LinkProcess, Uri)[]
        {
            ("direct openssl s_client -sess_in", marketLink, new Uri($"https://localhost:{nginx.Port}/whoami")),
            ("direct openssl s_client -sess_in (openssl market)", pskKeLink, new Uri($"https://localhost:{openssl.Port}/")),
            ("direct openssl s_client -sess_in (nginx allowing psk_ke)", pskKeNginxLink, new Uri($"https://localhost:{nginxPskKe.Port}/whoami")),
            ("direct openssl s_client -sess_in (nginx session cache)", cacheLink, new Uri($"https://localhost:{nginxCache.Port}/whoami")),
        })
        {
            File.Delete(sessionFile);
            var request = Encoding.ASCII.GetString(Daiko.Terminal.Http.HttpGet.Request(url));
            await OpenSslClientAsync(pki, link, url.AbsolutePath, sessionFile, request); // the full handshake that saves the session
            await Measure(way, "cached", () => OpenSslClientAsync(pki, link, url.AbsolutePath, sessionFile, request));
        }
        await DaikoCli.RunAsync(["terminal", "lock", "--terminal", terminalDir]);

        var direct = results.First(r => r.Way == "direct Daiko.Tls" && r.Session == "first");
        var report = Report(results, direct, runs, rttMs, kbps);
        Console.WriteLine();
        Console.WriteLine(report.Markdown);
        await File.WriteAllTextAsync(Path.Combine(output, quick ? "terminal-cost-quick.md" : "terminal-cost.md"), report.Markdown);
        await File.WriteAllTextAsync(Path.Combine(output, quick ? "terminal-cost-quick.json" : "terminal-cost.json"), report.Json);
        await File.WriteAllTextAsync(Path.Combine(output, quick ? "terminal-cost-quick.svg" : "terminal-cost.svg"), report.Svg);
        return report.BoundHolds ? 0 : 3;
    }

    private static TlsClientOptions DirectOptions(TestPki pki, TlsCounters counters, ClientCredential credential) => new()
    {
        ServerName = "localhost",
        ClientCredential = new ClientCredential(credential.CertificateChain, new CountingSigner(credential.Signer, counters)),
        CertificateValidator = new X509ChainValidator([pki.Root], counters: counters),
        Counters = counters,
    };

    private sealed class CountingSigner(ITlsSigner inner, TlsCounters counters) : ITlsSigner
    {
        public IReadOnlyList<SignatureScheme> SupportedSchemes => inner.SupportedSchemes;

        public ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
        {
            counters.AddPublicKeyOperations(1);
            return inner.SignAsync(scheme, content, cancellationToken);
        }
    }

    private static LinkProcess? _homeLink;

    /// <summary>A direct mTLS handshake with the nginx market that keeps sessions server-side (its tickets are short).</summary>
    private const string DirectSessionCache = "direct Daiko.Tls (nginx session cache)";

    /// <summary>
    /// One measured run. Bytes are what crossed the terminal's links (to the market and to the home
    /// server, TLS overhead included), counted by the link itself, so every way is measured alike.
    /// </summary>
    private static async Task<Sample> Timed(LinkProcess link, Func<TlsCounters, Task<(long FirstByteTimestamp, TlsCounters Counters)>> run)
    {
        await link.ResetCountersAsync();
        if (_homeLink is not null) await _homeLink.ResetCountersAsync();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        // Time to first byte runs from the moment the terminal starts (connecting, or asking the home
        // server to delegate) to the first byte of the market's answer: what a user waits.
        var start = Stopwatch.GetTimestamp();
        var (firstByte, counters) = await run(new TlsCounters());
        var first = Stopwatch.GetElapsedTime(start, firstByte).TotalMilliseconds;
        var cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMilliseconds;
        await Task.Delay(50);
        var market = await link.CountersAsync();
        var home = _homeLink is null ? (0, 0) : await _homeLink.CountersAsync();
        var sent = market.Upstream + home.Item1;
        var received = market.Downstream + home.Item2;
        return new Sample(sent, received, counters.RoundTrips, counters.PublicKeyOperations, cpuMs, first, 0);
    }

    /// <summary>Sends a GET, reads the whole answer, and returns the timestamp of its first byte.</summary>
    private static async Task<long> GetFirstByteAsync(Stream stream, string path = "/whoami")
    {
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"));
        var buffer = new byte[16384];
        _ = await stream.ReadAsync(buffer);
        var first = Stopwatch.GetTimestamp();
        while (await stream.ReadAsync(buffer) > 0) { }
        return first;
    }

    /// <summary>One `daiko terminal get --stats` through the agent; bytes from the links (market and home), counts from --stats.</summary>
    private static async Task<Sample> CliGetAsync(LinkProcess link, string url, string terminalDir, string[] args)
    {
        await link.ResetCountersAsync();
        if (_homeLink is not null) await _homeLink.ResetCountersAsync();
        var wall = Stopwatch.StartNew();
        var result = await DaikoCli.RunAsync(["terminal", "get", url, "--terminal", terminalDir, "--connect-to", $"127.0.0.1:{link.Port}", "--stats", .. args]);
        var wallMs = wall.Elapsed.TotalMilliseconds;
        if (result.ExitCode != 0) throw new InvalidOperationException($"daiko terminal get {url}: {result}");
        var stats = JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
        await Task.Delay(50);
        // The control channel's bytes are the command's own (--stats control_bytes, on the wire): the home
        // link also carries the stock's background refill, which starts as the command ends.
        var market = await link.CountersAsync();
        return new Sample(market.Upstream, market.Downstream,
            stats.GetProperty("round_trips").GetInt64() + stats.GetProperty("control_round_trips").GetInt64(),
            stats.GetProperty("public_key_ops").GetInt64(), double.NaN, stats.GetProperty("elapsed_ms").GetDouble(), stats.GetProperty("control_bytes").GetInt64(), wallMs);
    }

    /// <summary>One CLI process measured from spawn to exit (a direct <c>tls get</c>, or start-up alone); bytes and counts from its --stats when it prints them.</summary>
    private static async Task<Sample> CliWallAsync(string[] args, LinkProcess? link = null)
    {
        if (link is not null) await link.ResetCountersAsync();
        var wall = Stopwatch.StartNew();
        var result = await DaikoCli.RunAsync(args);
        var wallMs = wall.Elapsed.TotalMilliseconds;
        if (result.ExitCode != 0) throw new InvalidOperationException($"daiko {string.Join(' ', args)}: {result}");
        if (link is null) return new Sample(double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, 0, wallMs);
        var stats = JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
        await Task.Delay(50);
        var market = await link.CountersAsync();
        return new Sample(market.Upstream, market.Downstream, stats.GetProperty("round_trips").GetInt64(), stats.GetProperty("public_key_ops").GetInt64(),
            double.NaN, stats.GetProperty("elapsed_ms").GetDouble(), 0, wallMs);
    }

    /// <summary>openssl s_client, a full handshake, or (with <paramref name="sessionFile"/> present) resuming the session saved there.</summary>
    private static async Task<Sample> OpenSslClientAsync(TestPki pki, LinkProcess link, string path = "/whoami", string? sessionFile = null, string? request = null)
    {
        await link.ResetCountersAsync();
        var clock = Stopwatch.StartNew();
        List<string> args = ["s_client", "-connect", $"127.0.0.1:{link.Port}", "-servername", "localhost", "-tls1_3",
            "-cert", pki.User.CertificatePath, "-key", pki.User.KeyPath, "-CAfile", pki.RootPath, "-quiet", "-ign_eof"];
        if (sessionFile is not null)
        {
            if (File.Exists(sessionFile)) args.AddRange(["-sess_in", sessionFile]);
            args.AddRange(["-sess_out", sessionFile]);
        }
        using var process = new ExternalProcess("openssl", args);
        await process.StandardInput.WriteAsync(request ?? $"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        await process.StandardInput.FlushAsync();
        process.StandardInput.Close();
        await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
        var (up, down) = await link.CountersAsync();
        return new Sample(up, down, double.NaN, double.NaN, double.NaN, clock.Elapsed.TotalMilliseconds, 0, clock.Elapsed.TotalMilliseconds);
    }

    internal static async Task SetUpHomeAsync(TestPki pki, string home, string work)
    {
        await Must(["home", "init", "--home", home, "--subject", TestPki.UserSubject], "1111\n2222\nadmin-code-123\n");
        var request = CertificateRequest.LoadSigningRequestPem(File.ReadAllText(Path.Combine(home, "user.csr")), HashAlgorithmName.SHA256);
        var cert = pki.IssueForPublicKey(request.PublicKey, TestPki.UserSubject);
        var certPath = Path.Combine(work, "user.pem");
        File.WriteAllText(certPath, cert.ExportCertificatePem());
        await Must(["home", "cert", "import", "--home", home, "--cert", certPath, "--chain", pki.RootPath], "2222\n");
        await Must(["home", "trust", "add", "--home", home, "--ca", pki.RootPath]);
    }

    private static async Task Must(string[] args, string? stdin = null)
    {
        var r = await DaikoCli.RunAsync(args, stdin);
        if (r.ExitCode != 0) throw new InvalidOperationException($"daiko {string.Join(' ', args)}: {r}");
    }

    private sealed record Rendered(string Markdown, string Json, string Svg, bool BoundHolds);

    private static Rendered Report(List<(string Way, string Session, Distribution[] Stats)> results, (string Way, string Session, Distribution[] Stats) direct, int runs, int rttMs, int kbps)
    {
        var md = new StringBuilder();
        md.AppendLine($"Terminal cost per way to reach an nginx market (client certificate required), over a {rttMs} ms / {kbps} kbit/s link; median (p10–p90) of {runs} runs.");
        md.AppendLine("Bytes (both columns) include the terminal's control-channel bytes on the wire, counted by the links. CPU is the terminal process's own: the emulated links relay in");
        md.AppendLine("processes of their own and the home server is another process. SslStream runs with resumption off (nginx reports reused=.).");
        md.AppendLine("\"daiko CLI+agent\" rows run `daiko terminal get --stats` through the terminal agent after unlock (session \"second\": the agent's channel is open;");
        md.AppendLine("\"cached\": a ticket ready at the home server, or in the agent's local stock); their round trips and public-key ops are the --stats totals");
        md.AppendLine("(market and control channel, CLI and agent), their control-channel bytes (both directions, --stats control_bytes) are in \"bytes sent\", their CPU is not");
        md.AppendLine("measured (two processes), and their \"first byte ms\" is the CLI's elapsed_ms (the whole command in a fresh process, its JIT included, its start-up not).");
        md.AppendLine("\"process wall ms\" is a whole process from spawn to exit, start-up included: the CLI rows, `daiko tls get` (direct, no agent) and openssl s_client.");
        md.AppendLine("The s_client -sess_in rows send the very HTTP request the CLI sends for the same URL.");
        md.AppendLine();
        md.AppendLine("| way | session | bytes sent | bytes received | round trips | public-key ops | CPU ms | first byte ms | process wall ms |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var (way, session, s) in results)
        {
            md.AppendLine($"| {way} | {session} | {s[0].Format()} | {s[1].Format()} | {s[2].Format()} | {s[3].Format()} | {s[4].Format()} | {s[5].Format()} | {s[6].Format()} |");
        }
        md.AppendLine();
        md.Append(Goals(results));
        md.AppendLine();
        md.AppendLine("Bound of [0090] — each delegated mode relative to direct mTLS through Daiko.Tls (first session):");
        md.AppendLine();
        var holds = true;
        foreach (var (way, session, s) in results.Where(r => r.Way.StartsWith("daiko", StringComparison.Ordinal)))
        {
            var baseline = way.Contains("openssl market", StringComparison.Ordinal) ? results.First(r => r.Way == "direct Daiko.Tls (openssl market)")
                : way.Contains("TLS 1.2 market", StringComparison.Ordinal) ? results.First(r => r.Way == "direct Daiko.Tls (TLS 1.2 market)")
                : way.Contains("session cache", StringComparison.Ordinal) ? results.First(r => r.Way == DirectSessionCache)
                : direct;
            var bytes = (s[0].Median + s[1].Median) / (baseline.Stats[0].Median + baseline.Stats[1].Median);
            var cpu = s[4].Median / baseline.Stats[4].Median;
            var pk = s[3].Median;
            var ok = pk <= baseline.Stats[3].Median && bytes <= 1.0;
            holds &= pk <= baseline.Stats[3].Median;
            md.AppendLine($"- {way} ({session}): terminal bytes {bytes.ToString("0.00", CultureInfo.InvariantCulture)}× direct, public-key ops {pk} vs {baseline.Stats[3].Median}, CPU {cpu.ToString("0.00", CultureInfo.InvariantCulture)}× direct — {(ok ? "within the bound" : "ABOVE the bound in bytes")}");
        }
        var json = JsonSerializer.Serialize(new
        {
            rtt_ms = rttMs,
            kbps,
            runs,
            results = results.Select(r => new
            {
                way = r.Way,
                session = r.Session,
                bytes_sent = r.Stats[0],
                bytes_received = r.Stats[1],
                round_trips = r.Stats[2],
                public_key_ops = r.Stats[3],
                cpu_ms = r.Stats[4],
                first_byte_ms = r.Stats[5],
                process_wall_ms = r.Stats[6],
            }),
        }, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals });
        var svg = SvgBarChart.Render($"Daiko terminal cost ({rttMs} ms RTT, {kbps} kbit/s)",
        [
            new SvgBarChart.Panel("Terminal bytes (sent + received)", "bytes", results.Select(r => new SvgBarChart.Bar($"{r.Way} ({r.Session})", r.Stats[0].Median + r.Stats[1].Median, double.NaN, double.NaN)).ToList()),
            new SvgBarChart.Panel("Public-key operations on the terminal", "ops", results.Where(r => !double.IsNaN(r.Stats[3].Median)).Select(r => new SvgBarChart.Bar($"{r.Way} ({r.Session})", r.Stats[3].Median, double.NaN, double.NaN)).ToList()),
            new SvgBarChart.Panel("Time to first response byte", "ms", results.Select(r => new SvgBarChart.Bar($"{r.Way} ({r.Session})", r.Stats[5].Median, r.Stats[5].P10, r.Stats[5].P90)).ToList()),
        ]);
        return new Rendered(md.ToString(), json, svg, holds);
    }

    /// <summary>The terminal-cost goals, each as a ratio of medians within this run (a row missing from the run is skipped).</summary>
    private static string Goals(List<(string Way, string Session, Distribution[] Stats)> results)
    {
        double? Median(string way, int column) => results.FirstOrDefault(r => r.Way == way).Stats is { } s ? s[column].Median : null;
        double? Bytes(string way) => Median(way, 0) + Median(way, 1);
        string Ratio(double? a, double? b) => a is { } x && b is { } y && y > 0 ? (x / y).ToString("0.00", CultureInfo.InvariantCulture) + "×" : "–";
        var md = new StringBuilder();
        md.AppendLine("Goals, as ratios of medians in this run:");
        md.AppendLine();
        foreach (var (stock, openssl, direct) in new[]
        {
            ("daiko CLI+agent resume psk_ke, local stock (nginx session cache)", "direct openssl s_client -sess_in (nginx session cache)", DirectSessionCache),
            ("daiko CLI+agent resume psk_ke, local stock (nginx session cache)", "direct openssl s_client -sess_in (nginx session cache)", "direct Daiko.Tls"),
            ("daiko CLI+agent resume psk_ke, local stock (nginx allowing psk_ke)", "direct openssl s_client -sess_in (nginx allowing psk_ke)", "direct Daiko.Tls"),
            ("daiko CLI+agent resume psk_ke, local stock (openssl market)", "direct openssl s_client -sess_in (openssl market)", "direct Daiko.Tls (openssl market)"),
            ("daiko CLI+agent resume psk_dhe_ke, local stock", "direct openssl s_client -sess_in", "direct Daiko.Tls"),
            ("daiko CLI+agent resume psk_dhe_ke + 0-RTT, local stock", "direct openssl s_client -sess_in", "direct Daiko.Tls"),
        })
        {
            md.AppendLine($"- {stock}: bytes {Ratio(Bytes(stock), Bytes(direct))} a direct mTLS handshake ({direct}; goal ≤ 0.5×), {Ratio(Bytes(stock), Bytes(openssl))} OpenSSL's own resumption (goal ≤ 0.9×); public-key ops {Median(stock, 3)}");
        }
        foreach (var way in new[] { "daiko CLI+agent handoff", "daiko CLI+agent relay", "daiko CLI+agent resume psk_dhe_ke + 0-RTT, local stock" })
        {
            md.AppendLine($"- {way}: process wall {Ratio(Median(way, 6), Median("direct daiko tls get (CLI)", 6))} a direct `daiko tls get`, {Ratio(Median(way, 6), Median("direct openssl s_client", 6))} a direct openssl s_client; of which the CLI's start-up alone is {Ratio(Median("CLI start-up alone (daiko --version)", 6), Median(way, 6))}; in-process first byte {Ratio(Median(way, 5), Median("direct daiko tls get (CLI)", 5))} the direct `tls get`'s");
        }
        return md.ToString();
    }

    private static int IntArg(string[] args, string name, int fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], CultureInfo.InvariantCulture, out var v) ? v : fallback;
    }

    private static string StringArg(string[] args, string name, string fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }

    public static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Daiko.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? Environment.CurrentDirectory;
    }
}
