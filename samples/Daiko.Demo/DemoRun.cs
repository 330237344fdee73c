using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Daiko.Cards;
using Daiko.Home.Hosting;
using Daiko.Home.Trust;
using Daiko.Protocol;
using Daiko.Samples;
using Daiko.Samples.Market;
using Daiko.Samples.Money;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Daiko.Tls;

namespace Daiko.Demo;

/// <summary>
/// <c>daiko demo</c>: the whole system on loopback with embedded defaults — a home server with a
/// SoftHSM2 home card, a sample market and bank, and a terminal — printing each step on stdout.
/// </summary>
public static class DemoRun
{
    private sealed record Row(string Way, long BytesSent, long BytesReceived, long RoundTrips, long PublicKeyOps, long ControlBytes, double Milliseconds);

    /// <summary>Runs the demo (the delegated fetches <paramref name="rounds"/> times); returns null when every step worked, else the sentence saying which step failed.</summary>
    public static async Task<string?> RunAsync(bool keep, int rounds, CancellationToken ct)
    {
        var root = Directory.CreateTempSubdirectory("daiko-demo-").FullName;
        var step = 0;
        var log = new DemoLog(System.IO.Path.Combine(root, "home.log"));
        void Say(string text)
        {
            ct.ThrowIfCancellationRequested();
            Console.WriteLine($"[{++step,2}] {text}");
        }
        try
        {
            const string pin1 = "1111", pin2 = "2222", accessPin = "432100";
            var home = Path.Combine(root, "home");
            var terminalDir = Path.Combine(root, "terminal");
            using var pki = new DemoPki();

            Say("creating the home card: a SoftHSM2 token with a P-256 key generated inside it");
            using var card = HomeCard.Initialize(new HomeCardOptions(home), HomeCardKeyType.P256, pin1, pin2, "demo-admin-code");
            var csr = CertificateRequest.LoadSigningRequest(card.CreateCertificateSigningRequest("CN=Alice Example, O=Daiko Users", pin2), HashAlgorithmName.SHA256);
            using var userCertificate = pki.IssueFor(csr.PublicKey, "CN=Alice Example, O=Daiko Users");
            card.ImportCertificate(userCertificate.RawData, [pki.Root.RawData], pin2);
            File.WriteAllText(Path.Combine(root, "demo-root.pem"), pki.Root.ExportCertificatePem());
            MarketTrust.Add(home, Path.Combine(root, "demo-root.pem"));

            Say("starting a sample bank and a sample market (Kestrel, TLS 1.3, client certificate required, e-money)");
            using var marketCertificate = pki.IssueServer();
            var bankService = new SampleBank("bank.demo");
            var shop = new SampleMarketMoney("market.demo", bankService);
            await using var market = await SampleMarket.StartAsync(marketCertificate, pki.Root, IPAddress.Loopback, routes: shop.Map);
            shop.PublicUrl = market.Url;
            await using var bank = await SampleMarket.StartAsync(marketCertificate, pki.Root, IPAddress.Loopback, routes: bankService.Map);
            // A second declared market, one the demo device's policy does not let it pay.
            var kiosk = new SampleMarketMoney("kiosk.demo", bankService);
            await using var kioskMarket = await SampleMarket.StartAsync(marketCertificate, pki.Root, IPAddress.Loopback, routes: kiosk.Map);
            kiosk.PublicUrl = kioskMarket.Url;
            // The owner declares each payee with its role: only the bank's refills are credited, only the market's requests paid.
            await HomeServer.AddPayeeAsync(home, shop.Id, Daiko.Home.Storage.PayeeRole.Market, shop.Key);
            await HomeServer.AddPayeeAsync(home, bankService.Id, Daiko.Home.Storage.PayeeRole.Bank, bankService.Key);
            await HomeServer.AddPayeeAsync(home, kiosk.Id, Daiko.Home.Storage.PayeeRole.Market, kiosk.Key);

            Say("starting a local SMTP sink (aiosmtpd) for the payment-log mail");
            using var smtp = SmtpSinkProcess.Start(root);
            File.WriteAllText(Path.Combine(home, "mail.json"), $$"""{"smtp_host":"127.0.0.1","smtp_port":{{smtp.Port}},"from":"daiko@home.demo","to":"alice@example.demo"}""");

            Say("starting the home server on 127.0.0.1");
            await using var server = await HomeServer.StartAsync(new HomeServerOptions(home, new IPEndPoint(IPAddress.Loopback, 0)) { LoggerFactory = log }, card);

            Say("enrolling a terminal with a one-time code");
            var (secret, _) = await server.Devices.AddEnrollmentCodeAsync("demo-phone", ct);
            // The demo's market and bank listen on loopback: the owner allows them for this device, as
            // 'daiko home device add --markets 127.0.0.1 --max-tickets N' would (every fetch in resume mode takes a ticket).
            Say($"allowing the loopback market and bank for demo-phone, and {shop.Id} as the one payee it may pay (device policy --markets 127.0.0.1 --payees {shop.Id})");
            await new Daiko.Home.Storage.SqlDevicePolicyStore(Daiko.Home.Storage.HomeStore.Sqlite(HomeServer.DatabasePath(home))).SaveAsync("demo-phone",
                Daiko.Home.Policy.DevicePolicy.Default with
                {
                    Markets = Daiko.Home.Policy.DevicePolicy.ParseMarkets("127.0.0.1"),
                    MaxTickets = Math.Min(1000, 16 + 4 * rounds),
                    Payees = [shop.Id],
                }, ct);
            var code = EnrollmentCode.Compose(secret, server.Identity.SpkiHash);
            await TerminalClient.EnrollAsync(terminalDir, $"127.0.0.1:{server.LocalEndPoint.Port}", code, accessPin, ct);
            using var access = AccessCard.Open(terminalDir);
            Require(access.Unlock(accessPin).Accepted, "the access card did not unlock");

            Say("unlocking: access card PIN on the terminal, PIN1 and PIN2 to the home card over the control channel");
            await using var control = await TerminalClient.ConnectAsync(terminalDir, access.DeviceKey, ct);
            var homeControl = new HomeControl(control);
            Require(await homeControl.UnlockAsync(pin1, pin2, ct) == CardState.CryptoReady, "the home card is not ready");

            var rows = new List<Row>();
            Say("direct mutual TLS from the terminal (the baseline: the terminal would need the user's key)");
            rows.Add(await DirectAsync(pki, market.Port, ct));
            for (var round = 1; round <= rounds; round++)
            {
                foreach (var mode in new[] { DelegationMode.Resume, DelegationMode.Handoff, DelegationMode.Relay, DelegationMode.Assist })
                {
                    Say($"fetching /whoami in {mode.ToString().ToLowerInvariant()} mode" + (rounds > 1 ? $" (round {round} of {rounds})" : ""));
                    var row = await DelegatedAsync(control, market.Port, mode, ct);
                    if (round == 1) rows.Add(row);
                }
            }

            Say("what the home server learned of the market by itself: does it resume with psk_ke alone ('terminal get --kex auto' then runs no public-key operation)?");
            Console.WriteLine($"     home server: {await PskKeFindingAsync(log, ct)}");

            var wallet = new Daiko.Terminal.Wallet.WalletClient(control, DelegationMode.Resume);
            Say("refilling the purse from the bank: the bank signs, the card credits once and acknowledges");
            Console.WriteLine($"     bank: {await wallet.RefillAsync(bank.Url, 10_000, "JPY", ct)}");
            Say("paying an order: the market signs the request, the home card signs the payment in its token");
            var (paymentId, answer) = await wallet.PayAsync(market.Url, "tea-set", ct);
            Console.WriteLine($"     market: {answer}");
            Require(bankService.Deposits == 1, "the market did not deposit the payment at the bank");
            Say("cancelling the payment within 7 days: the market confirms, the card re-credits once");
            Console.WriteLine($"     balance after cancellation: {await wallet.CancelAsync(paymentId, ct)} JPY");
            var (_, keptPaymentAnswer) = await wallet.PayAsync(market.Url, "book", ct);
            Console.WriteLine($"     market: {keptPaymentAnswer}");
            Say($"paying {kiosk.Id}, a declared market this device's policy does not list: refused, nothing debited");
            try
            {
                await wallet.PayAsync(kioskMarket.Url, "snack", ct);
                throw new InvalidOperationException($"a payment to {kiosk.Id}, not among the device's payees, went through");
            }
            catch (ControlErrorException e) when (e.Code == ErrorCode.PolicyRefused)
            {
                Console.WriteLine($"     home server: {e.Message}");
            }
            var (_, balances) = await wallet.BalanceAsync(ct);
            Console.WriteLine($"     balance: {string.Join(", ", balances.Select(b => $"{b.Amount} {b.Currency}"))}");
            Say("mailing the payment log");
            var (sent, _) = await wallet.MailAsync(ct);
            Require(sent == 1, "the payment log was not mailed");
            var mail = await smtp.WaitForMailAsync(TimeSpan.FromSeconds(10)).WaitAsync(ct);
            Console.WriteLine("     mail that arrived:");
            foreach (var line in mail.Split('\n').Where(l => l.StartsWith("Subject:", StringComparison.Ordinal) || l.Contains("  refill", StringComparison.Ordinal) || l.Contains("  payment", StringComparison.Ordinal) || l.Contains("  cancellation", StringComparison.Ordinal) || l.StartsWith("log intact", StringComparison.Ordinal)))
            {
                Console.WriteLine($"       {line.TrimEnd()}");
            }

            Say("checking that a wrong PIN is refused and counted");
            await homeControl.LockAsync(ct);
            try
            {
                await homeControl.UnlockAsync(pin1, "0000", ct);
                throw new InvalidOperationException("a wrong PIN2 was accepted");
            }
            catch (ControlErrorException e) when (e.Code == ErrorCode.WrongPin2)
            {
                Console.WriteLine($"     home server: {e.Message}");
            }

            Console.WriteLine();
            Console.WriteLine("Terminal cost per way to reach the market (the terminal's own counts):");
            Console.WriteLine($"| {"way",-14} | {"bytes sent",10} | {"bytes recv",10} | {"round trips",11} | {"public-key ops",14} | {"control bytes",13} | {"ms",7} |");
            Console.WriteLine($"|{new string('-', 16)}|{new string('-', 12)}|{new string('-', 12)}|{new string('-', 13)}|{new string('-', 16)}|{new string('-', 15)}|{new string('-', 9)}|");
            foreach (var r in rows)
            {
                Console.WriteLine($"| {r.Way,-14} | {r.BytesSent,10} | {r.BytesReceived,10} | {r.RoundTrips,11} | {r.PublicKeyOps,14} | {r.ControlBytes,13} | {r.Milliseconds,7:0.0} |");
            }
            var direct = rows[0];
            Console.WriteLine();
            foreach (var r in rows.Skip(1))
            {
                var bytes = (double)(r.BytesSent + r.BytesReceived + r.ControlBytes) / (direct.BytesSent + direct.BytesReceived);
                Console.WriteLine($"  {r.Way,-8} terminal bytes {bytes:0.00}× direct, public-key ops {r.PublicKeyOps} vs {direct.PublicKeyOps}");
            }
            Console.WriteLine();
            Console.WriteLine("demo finished: every step worked");
            return null;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            if (Environment.GetEnvironmentVariable("DAIKO_DEBUG") == "1") Console.Error.WriteLine(e);
            var tail = log.Tail(12);
            if (tail.Count > 0)
            {
                Console.Error.WriteLine("the home server's last log lines:");
                foreach (var line in tail) Console.Error.WriteLine($"  {line}");
            }
            return $"demo step {step} failed: {e.Message}";
        }
        finally
        {
            if (keep) Console.WriteLine($"demo files kept in {root}");
            else try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }
    }

    private static void Require(bool condition, string message)
    {
        if (!condition) throw new InvalidOperationException(message);
    }

    private static async Task<Row> DirectAsync(DemoPki pki, int port, CancellationToken ct)
    {
        using var client = pki.IssueClient("CN=Alice Example, O=Daiko Users");
        var counters = new TlsCounters();
        var clock = Stopwatch.StartNew();
        await using var tls = await TlsClient.ConnectAsync("localhost", port, new TlsClientOptions
        {
            ServerName = "localhost",
            ClientCredential = new ClientCredential([client.RawData], new SoftwareSigner(client.GetECDsaPrivateKey()!, counters)),
            CertificateValidator = new X509ChainValidator([pki.Root], counters: counters),
            Counters = counters,
        }, ct);
        var body = await FetchAsync(tls, ct);
        Require(body.Contains("Alice Example", StringComparison.Ordinal), "the market did not see the user's certificate");
        return new Row("direct mTLS", counters.BytesSent, counters.BytesReceived, counters.RoundTrips, counters.PublicKeyOperations, 0, clock.Elapsed.TotalMilliseconds);
    }

    /// <summary>The home server's psk_ke finding for the market, from its log (the check runs in the background after resume's first handshake).</summary>
    private static async Task<string> PskKeFindingAsync(DemoLog log, CancellationToken ct)
    {
        for (var i = 0; i < 100; i++)
        {
            if (log.Tail(200).LastOrDefault(l => l.Contains("psk_ke alone", StringComparison.Ordinal)) is { } line) return line[(line.IndexOf(' ') + 1)..];
            await Task.Delay(100, ct);
        }
        return "no finding yet (the check runs in the background)";
    }

    private static async Task<Row> DelegatedAsync(ControlConnection control, int port, DelegationMode mode, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var before = control.BytesSent + control.BytesReceived;
        var session = await new DelegatedConnector(control).ConnectAsync("localhost", port, mode, cancellationToken: ct);
        string body;
        await using (session.Stream)
        {
            body = await FetchAsync(session.Stream, ct);
        }
        Require(body.Contains("Alice Example", StringComparison.Ordinal), $"the market did not see the user's certificate in {mode} mode");
        Console.WriteLine($"     market answered: {body.Trim()}");
        var controlBytes = control.BytesSent + control.BytesReceived - before;
        return new Row(mode.ToString().ToLowerInvariant(), session.Counters.BytesSent, session.Counters.BytesReceived, session.Counters.RoundTrips, session.Counters.PublicKeyOperations, controlBytes, clock.Elapsed.TotalMilliseconds);
    }

    private static async Task<string> FetchAsync(Stream stream, CancellationToken ct)
    {
        await stream.WriteAsync("GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"u8.ToArray(), ct);
        var response = await Daiko.Terminal.Http.HttpResponseReader.ReadBodyAsync(stream, ct);
        return Encoding.UTF8.GetString(response.Body);
    }
}
