using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards;
using Daiko.Home.Hosting;
using Daiko.Home.Trust;
using Daiko.Protocol;
using Daiko.Terminal;
using Daiko.TestSupport;

namespace Daiko.Home.Tests.Server;

/// <summary>A real home server on loopback with a SoftHSM2 home card holding a certificate from the test PKI.</summary>
public sealed class HomeFixture : IAsyncDisposable
{
    public const string Pin1 = "1111";
    public const string Pin2 = "2222";
    public const string AccessPin = "432100";

    /// <summary>An access card with the test-only KDF parameters (the product calibrates Argon2id at enrollment).</summary>
    public static AccessCard TestAccessCard(string directory, string pin) => AccessCard.Create(directory, pin, Daiko.Cards.Access.AccessCardKdf.ForTests);

    private HomeFixture(TempDirectory dir, TestPki pki, HomeCard card, HomeServer server)
    {
        Dir = dir;
        Pki = pki;
        Card = card;
        Server = server;
    }

    public TempDirectory Dir { get; }

    public TestPki Pki { get; }

    public HomeCard Card { get; }

    public HomeServer Server { get; }

    public string HomeDirectory => Path.Combine(Dir.Path, "home");

    public string Endpoint => $"127.0.0.1:{Server.LocalEndPoint.Port}";

    /// <param name="configure">Changes to the server's options (timeouts, limits) for one test.</param>
    public static HomeFixture Start(Func<HomeServerOptions, HomeServerOptions>? configure = null)
    {
        var dir = new TempDirectory("daiko-home");
        var pki = TestPki.Create(Path.Combine(dir.Path, "pki"));
        var home = Path.Combine(dir.Path, "home");
        var card = HomeCard.Initialize(new HomeCardOptions(home), HomeCardKeyType.P256, Pin1, Pin2, "admin-code-123");
        var csr = card.CreateCertificateSigningRequest(TestPki.UserSubject, Pin2);
        var request = CertificateRequest.LoadSigningRequest(csr, HashAlgorithmName.SHA256);
        var certificate = pki.IssueForPublicKey(request.PublicKey, TestPki.UserSubject);
        card.ImportCertificate(certificate.RawData, [pki.Root.RawData], Pin2);
        MarketTrust.Add(home, pki.RootPath);
        var options = new HomeServerOptions(home, new IPEndPoint(IPAddress.Loopback, 0));
        var server = HomeServer.Start(configure is null ? options : configure(options), card);
        return new HomeFixture(dir, pki, card, server);
    }

    /// <summary>An enrollment code for a new device whose policy allows the loopback test markets (as <c>home device add --markets</c> would).</summary>
    public async Task<string> NewCodeAsync(string name)
    {
        var (secret, _) = await Server.Devices.AddEnrollmentCodeAsync(name);
        await new Daiko.Home.Storage.SqlDevicePolicyStore(Daiko.Home.Storage.HomeStore.Sqlite(HomeServer.DatabasePath(HomeDirectory)))
            .SaveAsync(name, Daiko.Home.Policy.DevicePolicy.Default with { Markets = Daiko.Home.Policy.DevicePolicy.ParseMarkets(LoopbackMarkets.Markets), MaxTickets = LoopbackMarkets.MaxTickets });
        return EnrollmentCode.Compose(secret, Server.Identity.SpkiHash);
    }

    /// <summary>A terminal enrolled now, its control channel open and the home card unlocked through it.</summary>
    /// <param name="name">the device's name; another name is another device, with its own terminal directory.</param>
    /// <param name="versions">the control protocol versions the terminal offers; default all it speaks.</param>
    public async Task<ControlConnection> UnlockedTerminalAsync(CancellationToken ct, string name = "phone", IReadOnlyList<string>? versions = null)
    {
        var terminal = Path.Combine(Dir.Path, name == "phone" ? "terminal" : $"terminal-{name}");
        await TerminalClient.EnrollAsync(terminal, Endpoint, await NewCodeAsync(name), AccessPin, createAccessCard: TestAccessCard, cancellationToken: ct);
        using var access = AccessCard.Open(terminal);
        if (!access.Unlock(AccessPin).Accepted) throw new InvalidOperationException("the test terminal's access card did not unlock");
        var control = await TerminalClient.ConnectAsync(terminal, access.DeviceKey, ct, versions);
        await new HomeControl(control).UnlockAsync(Pin1, Pin2, ct);
        return control;
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        Card.Dispose();
        Dir.Dispose();
    }
}
