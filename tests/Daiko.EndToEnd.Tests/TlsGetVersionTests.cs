using System.Text.Json;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary><c>daiko tls get --tls-version</c> against a server that speaks only TLS 1.2, as a new user would try it.</summary>
public sealed class TlsGetVersionTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-tls-version");
    private readonly TestPki _pki;

    public TlsGetVersionTests()
    {
        _pki = TestPki.Create(Path.Combine(_dir.Path, "pki"));
    }

    public void Dispose() => _dir.Dispose();

    private string[] Get(int port, params string[] more) =>
        ["tls", "get", $"https://localhost:{port}/", "--ca", _pki.RootPath, "--cert", _pki.User.CertificatePath, "--key", _pki.User.KeyPath, .. more];

    private static JsonElement Stats(CliResult result) => JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;

    [Fact]
    public async Task TlsGet_ToAnIpAddress_ChecksTheCertificateAgainstIt_AndRefusesATrustedOneForAnotherName()
    {
        string[] ByAddress(int port) => ["tls", "get", $"https://127.0.0.1:{port}/", "--ca", _pki.RootPath, "--cert", _pki.User.CertificatePath, "--key", _pki.User.KeyPath];
        // The test PKI's server certificate names localhost and 127.0.0.1: reached by its address, it is accepted.
        using (var peer = await OpenSslServer.StartAsync(_pki))
        {
            var ok = await DaikoCli.RunAsync(ByAddress(peer.Port));
            Assert.True(ok.ExitCode == 0, ok.ToString());
            Assert.Contains("Alice Example", ok.StandardOutput, StringComparison.Ordinal);
        }

        // A certificate from the same trusted root for another name (what a man in the middle holding any trusted certificate
        // shows) is refused, before the client's certificate and signature go out.
        _pki.WithServer(_pki.IssueServer("elsewhere", "elsewhere.test"));
        using var other = await OpenSslServer.StartAsync(_pki);
        var refused = await DaikoCli.RunAsync(ByAddress(other.Port));
        Assert.True(refused.ExitCode != 0, refused.ToString());
        Assert.Contains("not valid for 127.0.0.1", refused.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("Alice Example", refused.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TlsGet_Auto_ReachesATls12OnlyServer_AndResumesWithItsTicket_WithoutPublicKeyOperations()
    {
        using var peer = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { Versions = "1.2" });
        var ticket = Path.Combine(_dir.Path, "ticket.cbor");
        // A link planted at the ticket's name (as another user could in a shared directory) is replaced, not written through.
        var victim = Path.Combine(_dir.Path, "victim.txt");
        File.WriteAllText(victim, "untouched");
        File.CreateSymbolicLink(ticket, victim);

        var first = await DaikoCli.RunAsync(Get(peer.Port, "--stats", "--save-ticket", ticket));
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.Equal("untouched", File.ReadAllText(victim));
        Assert.Null(new FileInfo(ticket).LinkTarget);
        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ticket));
        Assert.Contains("Alice Example", first.StandardOutput, StringComparison.Ordinal);
        Assert.Equal("1.2", Stats(first).GetProperty("version").GetString());
        Assert.False(Stats(first).GetProperty("resumed").GetBoolean());

        var resumed = await DaikoCli.RunAsync(Get(peer.Port, "--stats", "--resume-from", ticket, "--tls-version", "1.2"));
        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        var stats = Stats(resumed);
        Assert.Equal("1.2", stats.GetProperty("version").GetString());
        Assert.True(stats.GetProperty("resumed").GetBoolean());
        Assert.Equal(0, stats.GetProperty("public_key_ops").GetInt64());
        Assert.Equal(1, stats.GetProperty("round_trips").GetInt64() - 1); // the abbreviated handshake, then the request
    }

    [Fact]
    public async Task TlsGet_Tls13Only_AgainstATls12OnlyServer_SaysWhy()
    {
        using var peer = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { Versions = "1.2" });

        var result = await DaikoCli.RunAsync(Get(peer.Port, "--tls-version", "1.3"));

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("does not speak TLS 1.3", result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TlsGet_Auto_AgainstAServerSpeakingBoth_ReportsTls13()
    {
        using var peer = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { Versions = "both" });

        var result = await DaikoCli.RunAsync(Get(peer.Port, "--stats"));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("1.3", Stats(result).GetProperty("version").GetString());
    }
}
