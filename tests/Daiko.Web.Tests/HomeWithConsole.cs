using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.TestSupport;

namespace Daiko.Web.Tests;

/// <summary>
/// A real <c>daiko home serve</c> process with its console on loopback, a certificate from the test PKI
/// on its SoftHSM2 home card, and (unless asked otherwise) one terminal enrolled and unlocked through
/// the CLI as a user would.
/// </summary>
public class HomeWithConsole : IAsyncLifetime
{
    // Distinctive values, so that a log test can look for them inside any line without meeting a port or a count.
    public const string Pin1 = "pin1-Kq7w";
    public const string Pin2 = "pin2-Zt3x";
    public const string AccessPin = "432100";

    public TempDirectory Dir { get; } = new("daiko-web");

    public TestPki Pki { get; private set; } = null!;

    public string Home => Path.Combine(Dir.Path, "home");

    public string Terminal => Path.Combine(Dir.Path, "terminal");

    public ExternalProcess Server { get; private set; } = null!;

    public int Port { get; private set; }

    public int ConsolePort { get; private set; }

    public string ConsoleUrl => $"http://127.0.0.1:{ConsolePort}";

    protected virtual bool EnrollTerminal => true;

    /// <summary>More options for <c>home serve</c>.</summary>
    protected virtual IEnumerable<string> ServeOptions => [];

    /// <summary>The phone's enrollment code as 'home device add' printed it (null without an enrolled terminal).</summary>
    public string? EnrollmentCode { get; private set; }

    public virtual async Task InitializeAsync()
    {
        Pki = TestPki.Create(Path.Combine(Dir.Path, "pki"));
        await Ok(["home", "init", "--home", Home, "--subject", TestPki.UserSubject], $"{Pin1}\n{Pin2}\nadmin-code-123\n");
        var request = CertificateRequest.LoadSigningRequestPem(File.ReadAllText(Path.Combine(Home, "user.csr")), HashAlgorithmName.SHA256);
        var certPath = Path.Combine(Dir.Path, "user.pem");
        File.WriteAllText(certPath, Pki.IssueForPublicKey(request.PublicKey, TestPki.UserSubject).ExportCertificatePem());
        await Ok(["home", "cert", "import", "--home", Home, "--cert", certPath, "--chain", Pki.RootPath], Pin2 + "\n");
        await Ok(["home", "trust", "add", "--home", Home, "--ca", Pki.RootPath]);
        await StartServerAsync();
        if (!EnrollTerminal) return;
        var code = (await Ok(LoopbackMarkets.DeviceAdd(Home, "phone"))).StandardOutput.Trim();
        EnrollmentCode = code;
        await Ok(["terminal", "enroll", "--terminal", Terminal, "--home", $"127.0.0.1:{Port}", "--code", code], AccessPin + "\n");
        await Ok(["terminal", "unlock", "--terminal", Terminal], $"{AccessPin}\n{Pin1}\n{Pin2}\n");
    }

    public async Task StartServerAsync()
    {
        Port = Loopback.FreePort();
        ConsolePort = Loopback.FreePort();
        Server = DaikoCli.Start(["home", "serve", "--home", Home, "--listen", $"127.0.0.1:{Port}", "--console", $"127.0.0.1:{ConsolePort}", .. ServeOptions]);
        await Server.WaitForOutputAsync("console on http", TimeSpan.FromSeconds(60));
    }

    /// <summary>A fresh one-time login URL from <c>daiko home console-link</c>.</summary>
    public async Task<string> LinkAsync() => (await Ok(["home", "console-link", "--home", Home])).StandardOutput.Trim();

    /// <summary>Sends a POSIX signal to the server process.</summary>
    public void Signal(string name)
    {
        using var kill = Process.Start("kill", ["-" + name, Server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        kill.WaitForExit(5000);
        Assert.Equal(0, kill.ExitCode);
    }

    public static async Task<CliResult> Ok(string[] args, string? stdin = null)
    {
        var result = await DaikoCli.RunAsync(args, stdin, TimeSpan.FromSeconds(120));
        Assert.True(result.ExitCode == 0, $"daiko {string.Join(' ', args)} failed: {result}");
        return result;
    }

    public virtual async Task DisposeAsync()
    {
        if (EnrollTerminal && Directory.Exists(Terminal)) await DaikoCli.RunAsync(["terminal", "lock", "--terminal", Terminal]);
        Server.Dispose();
        Dir.Dispose();
    }
}
