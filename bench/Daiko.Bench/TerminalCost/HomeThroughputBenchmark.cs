using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using Daiko.Cards;
using Daiko.Cards.Diagnostics;
using Daiko.Home.Delegation;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Bench.TerminalCost;

/// <summary>
/// Delegated full handshakes per second (CertificateVerify signed in the home card on SoftHSM2)
/// against nginx, next to <c>openssl s_time -new</c> against the same nginx in the same run; home-card
/// signatures against raw C_Sign; durable payments against plain SQLite commits; and the data path
/// (<see cref="DataPathBenchmark"/>). <c>[--quick] [--out DIR]</c>.
/// </summary>
public static partial class HomeThroughputBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var seconds = args.Contains("--quick") ? 2 : 10;
        var extraLines = "";
        using var dir = new TempDirectory("daiko-bench-home");
        var pki = TestPki.Create(Path.Combine(dir.Path, "pki"));
        using var nginx = await NginxServer.StartAsync(pki, dir.Path);
        using var card = HomeCard.Initialize(new HomeCardOptions(Path.Combine(dir.Path, "home")), HomeCardKeyType.P256, "1111", "2222", "admin-code-123");
        var request = CertificateRequest.LoadSigningRequest(card.CreateCertificateSigningRequest(TestPki.UserSubject, "2222"), HashAlgorithmName.SHA256);
        card.ImportCertificate(pki.IssueForPublicKey(request.PublicKey, TestPki.UserSubject).RawData, [pki.Root.RawData], "2222");
        card.EnterPin1("1111");
        card.EnterPin2("2222");
        DelegationService Delegation(IServerCertificateValidator validator) => new(() => new ClientCredential(card.CertificateChain, card.TlsSigner), validator,
            new SessionCache<SessionTicket>(), new MarketProfiles(Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(dir.Path, "home.db")).MarketProfiles));
        // nginx listens on loopback: allowed explicitly, as a device policy '--markets 127.0.0.1' would.
        var market = new MarketRequest("localhost", nginx.Port, null, null) { Reach = new Daiko.Home.Policy.MarketReach(Daiko.Home.Policy.DevicePolicy.ParseMarkets("127.0.0.1")) };

        // Daiko's delegated full handshakes, with the home server's chain-verdict cache (the market's chain
        // is validated once, then remembered) and without it (validated every time, as the peers do), and
        // the managed peer: SslStream full handshakes with the same client certificate (software key),
        // resumption off (SslStream resumes on Linux otherwise: nginx would report reused=r). The three run
        // in interleaved one-second slices after a warm-up slice each, so they share the machine's state;
        // each is counted per wall-clock second and per second of this process's user CPU.
        await SslStreamPeer.RequireFullHandshakesAsync(pki, nginx.Port);
        var cachedDelegation = Delegation(new CachingCertificateValidator(new X509ChainValidator([pki.Root])));
        var uncachedDelegation = Delegation(new X509ChainValidator([pki.Root]));
        var ways = new (string Name, Func<Task> Once)[]
        {
            ("cached", async () => { await using var c = await cachedDelegation.ConnectAsUserAsync(null, market, null, CancellationToken.None); }),
            ("uncached", async () => { await using var c = await uncachedDelegation.ConnectAsUserAsync(null, market, null, CancellationToken.None); }),
            ("sslstream", async () => { await using var ssl = await SslStreamPeer.ConnectAsync(pki, nginx.Port, resume: false); }),
        };
        var totals = ways.ToDictionary(w => w.Name, _ => (Count: 0, Wall: TimeSpan.Zero, Cpu: TimeSpan.Zero));
        for (var slice = 0; slice <= seconds; slice++)
        {
            foreach (var (name, once) in ways)
            {
                var cpu = Process.GetCurrentProcess().UserProcessorTime;
                var wall = Stopwatch.StartNew();
                var count = 0;
                while (wall.Elapsed < TimeSpan.FromSeconds(1))
                {
                    await once();
                    count++;
                }
                if (slice == 0) continue; // warm-up
                var t = totals[name];
                totals[name] = (t.Count + count, t.Wall + wall.Elapsed, t.Cpu + (Process.GetCurrentProcess().UserProcessorTime - cpu));
            }
        }
        (double Wall, double Cpu) Rate(string name) => (totals[name].Count / totals[name].Wall.TotalSeconds, totals[name].Count / totals[name].Cpu.TotalSeconds);
        var cached = Rate("cached");
        var uncached = Rate("uncached");
        var sslStreamRate = Rate("sslstream");

        // openssl s_time -new prints its count over its user CPU seconds ("N connections in X.XXs") and over
        // whole real seconds ("N connections in T real seconds", truncated: a 10-second run may read 11).
        // The CPU rate is compared with Daiko's CPU rate; the wall-clock rate is the count over the
        // seconds this process measured around s_time (its start included), compared with Daiko's wall rate.
        var sTimeClock = Stopwatch.StartNew();
        using var sTime = new ExternalProcess("openssl", ["s_time", "-connect", $"127.0.0.1:{nginx.Port}", "-new", "-time", seconds.ToString(CultureInfo.InvariantCulture),
            "-cert", pki.User.CertificatePath, "-key", pki.User.KeyPath, "-CAfile", pki.RootPath]);
        await sTime.WaitForExitAsync(TimeSpan.FromSeconds(seconds + 30));
        var sTimeWall = sTimeClock.Elapsed.TotalSeconds;
        var (opensslWall, opensslCpu) = OpensslRates(sTime.Output, sTimeWall);

        // Signatures through the home card (state machine, DER conversion) against raw C_Sign on the same token.
        byte[] content = [.. Enumerable.Repeat((byte)0x20, 64), .. "TLS 1.3, client CertificateVerify"u8, 0, .. RandomNumberGenerator.GetBytes(32)];
        var clock = Stopwatch.StartNew();
        var viaCard = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(seconds / 2.0))
        {
            await card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, content, CancellationToken.None);
            viaCard++;
        }
        var cardRate = viaCard / clock.Elapsed.TotalSeconds;
        var raw = card.RawTokenSigner("2222");
        clock.Restart();
        var rawCount = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(seconds / 2.0))
        {
            raw(SHA256.HashData(content));
            rawCount++;
        }
        var rawRate = rawCount / clock.Elapsed.TotalSeconds;

        // Payments per second with durable commits (each: verify the market's COSE, debit, log, sign in the
        // token, commit with fsync) against a plain SQLite insert-and-commit loop on the same disk.
        using var marketKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var bank = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var ledger = new Daiko.Home.Money.PurseLedger(Path.Combine(dir.Path, "purse.db"), new Daiko.Home.Money.HomeCardPurse(card), (id, role) => (id, role) switch { ("m", Daiko.Home.Storage.PayeeRole.Market) => marketKey, ("b", Daiko.Home.Storage.PayeeRole.Bank) => bank, _ => null });
        ledger.Refill(new Daiko.Money.Refill("b", card.CardId, "r", long.MaxValue / 4, "JPY", DateTimeOffset.UtcNow.AddDays(1)).Sign(bank));
        var requests = Enumerable.Range(0, 5000).Select(i => new Daiko.Money.PaymentRequest("m", $"o{i}", $"q{i}", 1L, "JPY", DateTimeOffset.UtcNow.AddDays(1), "").Sign(marketKey)).ToList();
        clock.Restart();
        var paid = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(seconds / 2.0) && paid < requests.Count) ledger.Pay(requests[paid++]);
        var payRate = paid / clock.Elapsed.TotalSeconds;
        using (var plain = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(dir.Path, "plain.db")};Pooling=False"))
        {
            plain.Open();
            using var setup = plain.CreateCommand();
            setup.CommandText = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)";
            setup.ExecuteNonQuery();
            clock.Restart();
            var inserts = 0;
            while (clock.Elapsed < TimeSpan.FromSeconds(seconds / 2.0))
            {
                using var tx = plain.BeginTransaction();
                using var insert = plain.CreateCommand();
                insert.Transaction = tx;
                insert.CommandText = "INSERT INTO t(v) VALUES('x')";
                insert.ExecuteNonQuery();
                tx.Commit();
                inserts++;
            }
            var insertRate = inserts / clock.Elapsed.TotalSeconds;
            var purseLine = $"payments one at a time (one payer: each its own durable commit and token signature; 100 concurrent payers sharing commits are in purse-ops.md): {payRate:0}/s; plain SQLite insert-and-commit: {insertRate:0}/s; ratio {payRate / insertRate:0.00}";
            var cardLine = $"ECDSA P-256 signatures through the home card: {cardRate:0}/s; raw Pkcs11Interop C_Sign on the same SoftHSM2 token: {rawRate:0}/s; ratio {cardRate / rawRate:0.00}";
            Console.WriteLine(purseLine);
            Console.WriteLine(cardLine);
            extraLines = purseLine + "\n" + cardLine + "\n";
        }

        foreach (var dataLine in await DataPathBenchmark.RunAsync(args.Contains("--quick")))
        {
            Console.WriteLine(dataLine);
            extraLines += dataLine + "\n";
        }

        var inv = CultureInfo.InvariantCulture;
        var line = string.Create(inv, $"delegated full handshakes with the home card (SoftHSM2), per wall-clock second: chain verdicts cached {cached.Wall:0.0}/s, uncached {uncached.Wall:0.0}/s; ") +
            string.Create(inv, $"openssl s_time -new (software key), count over the wall-clock seconds it ran ({sTimeWall:0.00} s): {opensslWall:0.0}/s; ratio cached {cached.Wall / opensslWall:0.00}, uncached {uncached.Wall / opensslWall:0.00}; ") +
            string.Create(inv, $"SslStream full handshakes, resumption off (software key, same nginx): {sslStreamRate.Wall:0.0}/s; ratio cached {cached.Wall / sslStreamRate.Wall:0.00}, uncached {uncached.Wall / sslStreamRate.Wall:0.00}\n") +
            string.Create(inv, $"the same handshakes per second of user CPU: Daiko cached {cached.Cpu:0.0}/s, uncached {uncached.Cpu:0.0}/s (this process, SoftHSM2 included); ") +
            string.Create(inv, $"openssl s_time -new, count over its user CPU seconds: {opensslCpu:0.0}/s; ratio cached {cached.Cpu / opensslCpu:0.00}, uncached {uncached.Cpu / opensslCpu:0.00}; ") +
            string.Create(inv, $"SslStream {sslStreamRate.Cpu:0.0}/s; ratio cached {cached.Cpu / sslStreamRate.Cpu:0.00}, uncached {uncached.Cpu / sslStreamRate.Cpu:0.00}\n") +
            string.Create(inv, $"user CPU per handshake: Daiko cached {1000 / cached.Cpu:0.000} ms, uncached {1000 / uncached.Cpu:0.000} ms; openssl s_time -new {1000 / opensslCpu:0.000} ms; SslStream {1000 / sslStreamRate.Cpu:0.000} ms ") +
            "(user CPU of the client process only: nginx's share is in none of them)";
        Console.WriteLine(line);
        var outIndex = Array.IndexOf(args, "--out");
        var output = outIndex >= 0 && outIndex + 1 < args.Length ? args[outIndex + 1] : Path.Combine(TerminalCostBenchmark.FindRepoRoot(), "bench", "results");
        Directory.CreateDirectory(output);
        await File.WriteAllTextAsync(Path.Combine(output, args.Contains("--quick") ? "home-throughput-quick.md" : "home-throughput.md"), line + "\n" + extraLines);
        return double.IsNaN(opensslWall) || double.IsNaN(opensslCpu) ? 1 : 0;
    }

    /// <summary>
    /// s_time's handshakes per wall-clock second (its count over <paramref name="wallSeconds"/>, measured
    /// around the process) and per second of its user CPU (its count over the CPU seconds it printed).
    /// </summary>
    public static (double Wall, double Cpu) OpensslRates(string output, double wallSeconds) =>
        OpensslCount(output) is { } c ? (c.Count / wallSeconds, c.Count / c.UserCpuSeconds) : (double.NaN, double.NaN);

    /// <summary>s_time's connection count and the user CPU seconds it printed beside it ("N connections in X.XXs;"), or null.</summary>
    public static (double Count, double UserCpuSeconds)? OpensslCount(string output)
    {
        var userLine = UserSecondsLine().Match(output);
        return userLine.Success
            ? (double.Parse(userLine.Groups[1].Value, CultureInfo.InvariantCulture), double.Parse(userLine.Groups[2].Value, CultureInfo.InvariantCulture))
            : null;
    }

    [GeneratedRegex(@"(\d+) connections in ([\d.]+)s;")]
    private static partial Regex UserSecondsLine();
}
