using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Interop.Tests;

/// <summary>
/// Servers whose certificate carries an RSASSA-PSS key (OID 1.2.840.113549.1.1.10), as OpenSSL makes
/// with <c>genpkey -algorithm RSA-PSS</c>: the client offers rsa_pss_pss_* and must verify them.
/// </summary>
public sealed class RsaPssKeyInteropTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-pss");
    private readonly TestPki _pki;

    public RsaPssKeyInteropTests()
    {
        _pki = TestPki.Create(_dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    /// <summary>An RSASSA-PSS key made by openssl (optionally restricted to one hash) and a server certificate for it.</summary>
    internal static IssuedCertificate IssuePssServer(TestPki pki, string directory, string? restrictToHash = null)
    {
        var keyPath = Path.Combine(directory, $"pss-{restrictToHash ?? "any"}.key");
        var args = new List<string> { "genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keyPath };
        if (restrictToHash is not null) args.AddRange(["-pkeyopt", $"rsa_pss_keygen_md:{restrictToHash}", "-pkeyopt", $"rsa_pss_keygen_mgf1_md:{restrictToHash}"]);
        Run("openssl", args);
        var spki = Run("openssl", ["pkey", "-in", keyPath, "-pubout"]);
        var publicKey = PublicKey.CreateFromSubjectPublicKeyInfo(Convert.FromBase64String(string.Concat(
            spki.Split('\n').Where(l => l.Length > 0 && !l.StartsWith("-----", StringComparison.Ordinal)))), out _);
        Assert.Equal("1.2.840.113549.1.1.10", publicKey.Oid.Value);
        var certificate = pki.IssueForPublicKey(publicKey, "CN=localhost", clientAuth: false, dnsName: "localhost");
        var certPath = Path.Combine(directory, $"pss-{restrictToHash ?? "any"}.pem");
        File.WriteAllText(certPath, certificate.ExportCertificatePem());
        return new IssuedCertificate(certificate, certPath, keyPath);
    }

    private static string Run(string file, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), $"{file} did not finish");
        Assert.True(process.ExitCode == 0, $"{file} failed: {error}");
        return output;
    }

    private TlsClientOptions Options() => new()
    {
        ServerName = "localhost",
        ClientCredential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath),
        CertificateValidator = new X509ChainValidator([_pki.Root]),
        HandshakeTimeout = TimeSpan.FromSeconds(10),
    };

    [Theory]
    [InlineData(null)]
    [InlineData("sha384")]
    public async Task FullHandshake_WithAnRsaPssKeyServerCertificate_Verifies(string? restrictToHash)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        _pki.WithServer(IssuePssServer(_pki, _dir.Path, restrictToHash));
        using var peer = await OpenSslServer.StartAsync(_pki);

        await using var connection = await EngineInteropTests.ConnectAsync(peer.Port, Options(), cts.Token);
        var body = await EngineInteropTests.GetAsync(connection, peer.Host, peer.IdentityPath, cts.Token);

        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }
}
