using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Daiko.TestSupport;

namespace Daiko.Bench.TerminalCost;

/// <summary>The managed peer every benchmark compares with: SslStream, TLS 1.3, the user's certificate (software key).</summary>
internal static class SslStreamPeer
{
    /// <param name="aes128Only">limit to TLS_AES_128_GCM_SHA256 (to compare one suite with Daiko.Tls).</param>
    public static async Task<SslStream> ConnectAsync(TestPki pki, int port, bool aes128Only = false)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", port);
        var ssl = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            EnabledSslProtocols = SslProtocols.Tls13,
            CipherSuitesPolicy = aes128Only && !OperatingSystem.IsWindows() ? new CipherSuitesPolicy([TlsCipherSuite.TLS_AES_128_GCM_SHA256]) : null,
            ClientCertificates = new X509CertificateCollection { pki.User.Certificate },
            CertificateChainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, CustomTrustStore = { pki.Root }, RevocationMode = X509RevocationMode.NoCheck },
        });
        return ssl;
    }
}
