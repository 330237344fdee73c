using System.Net;
using System.Security.Cryptography;
using Daiko.Home.Web;

namespace Daiko.Web.Tests;

/// <summary>A real <c>daiko home serve</c> whose console presents a certificate (<c>--console-cert</c>/<c>--console-key</c>).</summary>
public sealed class HomeWithTlsConsole : HomeWithConsole
{
    protected override bool EnrollTerminal => false;

    protected override IEnumerable<string> ServeOptions => ["--console-cert", Pki.Server.CertificatePath, "--console-key", Pki.Server.KeyPath];
}

/// <summary>
/// The console under TLS: the owner can tell the console's certificate from an impostor's (a self-signed one looks alike
/// in a browser's warning) by the fingerprint the server and every login link give.
/// </summary>
public sealed class ConsoleCertificateProcessTests(HomeWithTlsConsole system) : IClassFixture<HomeWithTlsConsole>
{
    [Fact]
    public async Task TheServeLine_AndEveryLoginLink_GiveTheFingerprintOfTheCertificateTheConsolePresents()
    {
        var expected = ConsoleLinks.Fingerprint(system.Pki.Server.Certificate);
        await system.Server.WaitForOutputAsync($"console certificate SHA-256 {expected}", TimeSpan.FromSeconds(10));

        var link = await HomeWithConsole.Ok(["home", "console-link", "--home", system.Home]);
        Assert.StartsWith($"https://127.0.0.1:{system.ConsolePort}/login/", link.StandardOutput.Trim(), StringComparison.Ordinal);
        Assert.Contains($"SHA-256 fingerprint {expected}", link.StandardError, StringComparison.Ordinal);
        // The same for a script: one object with another one-time link, its expiry and the fingerprint.
        var linked = System.Text.Json.JsonDocument.Parse((await HomeWithConsole.Ok(["home", "console-link", "--home", system.Home, "--json"])).StandardOutput).RootElement;
        Assert.StartsWith($"https://127.0.0.1:{system.ConsolePort}/login/", linked.GetProperty("url").GetString(), StringComparison.Ordinal);
        Assert.NotEqual(link.StandardOutput.Trim(), linked.GetProperty("url").GetString());
        Assert.InRange(linked.GetProperty("expires").GetDateTimeOffset(), DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddHours(1));
        Assert.Equal(expected, linked.GetProperty("fingerprint").GetString());

        // It is the certificate the console presents.
        string? presented = null;
        using var handler = new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, certificate, _, _) =>
            {
                presented = string.Join(':', SHA256.HashData(certificate!.RawData).Select(b => b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)));
                return true;
            },
        };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(20) };
        using var response = await http.GetAsync(new Uri($"https://127.0.0.1:{system.ConsolePort}/healthz"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(expected, presented);
    }
}
