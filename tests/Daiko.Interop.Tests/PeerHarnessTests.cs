using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Daiko.TestSupport;

namespace Daiko.Interop.Tests;

/// <summary>
/// The real servers the interop suite runs against, checked with the platform's SslStream first so
/// that a failure in the engine tests is never a broken harness.
/// </summary>
public sealed class PeerHarnessTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-peers");
    private readonly TestPki _pki;

    public PeerHarnessTests()
    {
        _pki = TestPki.Create(_dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> Peers => new() { "openssl", "gnutls", "nginx", "kestrel" };

    [Theory]
    [MemberData(nameof(Peers))]
    public async Task Peer_SeesTheClientCertificateSubject_OverSslStream(string name)
    {
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path);
        var body = await SslStreamGetAsync(peer, _pki.User.Certificate);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Peers))]
    public async Task Peer_RefusesAClientWithoutCertificate(string name)
    {
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path);
        var failed = false;
        try
        {
            var body = await SslStreamGetAsync(peer, clientCertificate: null);
            failed = !body.Contains("Alice", StringComparison.Ordinal) && (body.Length == 0 || body.Contains("400", StringComparison.Ordinal) || body.Contains("No required SSL certificate", StringComparison.Ordinal));
        }
        catch (Exception e) when (e is IOException or AuthenticationException or SocketException)
        {
            failed = true;
        }
        Assert.True(failed, $"{name} served a client that sent no certificate");
    }

    private async Task<string> SslStreamGetAsync(ITlsPeer peer, X509Certificate2? clientCertificate)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", peer.Port, cts.Token);
        await using var ssl = new SslStream(tcp.GetStream());
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = peer.Host,
            EnabledSslProtocols = SslProtocols.Tls13,
            ClientCertificates = clientCertificate is null ? null : new X509CertificateCollection { clientCertificate },
            CertificateChainPolicy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                CustomTrustStore = { _pki.Root },
                RevocationMode = X509RevocationMode.NoCheck,
            },
        };
        await ssl.AuthenticateAsClientAsync(options, cts.Token);
        var request = $"GET {peer.IdentityPath} HTTP/1.0\r\nHost: {peer.Host}\r\n\r\n";
        await ssl.WriteAsync(Encoding.ASCII.GetBytes(request), cts.Token);
        using var reader = new StreamReader(ssl, Encoding.UTF8);
        return await reader.ReadToEndAsync(cts.Token);
    }
}
