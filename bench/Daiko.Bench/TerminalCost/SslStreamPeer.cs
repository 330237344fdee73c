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
    /// <param name="resume">
    /// let SslStream resume (it does on Linux, from the second connection on); false forces a full
    /// handshake every time, the only fair peer for Daiko's full handshakes.
    /// </param>
    public static async Task<SslStream> ConnectAsync(TestPki pki, int port, bool aes128Only = false, bool resume = true)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", port);
        var ssl = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            AllowTlsResume = resume,
            EnabledSslProtocols = SslProtocols.Tls13,
            CipherSuitesPolicy = aes128Only && !OperatingSystem.IsWindows() ? new CipherSuitesPolicy([TlsCipherSuite.TLS_AES_128_GCM_SHA256]) : null,
            ClientCertificates = new X509CertificateCollection { pki.User.Certificate },
            CertificateChainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, CustomTrustStore = { pki.Root }, RevocationMode = X509RevocationMode.NoCheck },
        });
        return ssl;
    }

    /// <summary>
    /// GETs nginx's /whoami over a fresh full-handshake connection and throws unless nginx reports a
    /// full handshake (reused=.): proof that the full-handshake rows are not resumptions.
    /// </summary>
    public static async Task RequireFullHandshakesAsync(TestPki pki, int port)
    {
        for (var i = 0; i < 2; i++)
        {
            await using var ssl = await ConnectAsync(pki, port, resume: false);
            await ssl.WriteAsync("GET /whoami HTTP/1.0\r\nHost: localhost\r\n\r\n"u8.ToArray());
            using var answer = new MemoryStream();
            await ssl.CopyToAsync(answer);
            var text = System.Text.Encoding.ASCII.GetString(answer.ToArray());
            if (!text.Contains("reused=.", StringComparison.Ordinal)) throw new InvalidOperationException($"SslStream resumed although resumption is off: {text}");
        }
    }
}
