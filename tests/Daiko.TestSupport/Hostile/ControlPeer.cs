using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Protocol.Wire;

namespace Daiko.TestSupport.Hostile;

/// <summary>
/// A hand-driven peer of a real <c>daiko home serve</c>: TLS 1.3 from a chosen loopback address, with or
/// without a client certificate, sending whatever frames (or bytes) a test wants and reading what comes back.
/// </summary>
public sealed class ControlPeer : IAsyncDisposable
{
    private readonly TcpClient _tcp;
    private readonly SslStream _ssl;
    private readonly byte[] _header = new byte[4];

    private ControlPeer(TcpClient tcp, SslStream ssl)
    {
        _tcp = tcp;
        _ssl = ssl;
    }

    /// <summary>Connects and completes TLS; <paramref name="preamble"/> (e.g. a PROXY protocol header) is sent first, in the clear.</summary>
    public static async Task<ControlPeer> ConnectAsync(int port, string from = "127.0.0.1", X509Certificate2? certificate = null, TimeSpan? timeout = null, byte[]? preamble = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        var tcp = new TcpClient(new IPEndPoint(IPAddress.Parse(from), 0));
        try
        {
            await tcp.ConnectAsync(IPAddress.Loopback, port, cts.Token);
            if (preamble is not null) await tcp.GetStream().WriteAsync(preamble, cts.Token);
            var ssl = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "daiko-home",
                EnabledSslProtocols = SslProtocols.Tls13,
                ApplicationProtocols = [new SslApplicationProtocol(ControlProtocol.Alpn)],
                // Offline: this client must not fetch its own certificate's issuers (the test counts fetches by the server).
                ClientCertificateContext = certificate is null ? null : SslStreamCertificateContext.Create(certificate, additionalCertificates: null, offline: true),
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            }, cts.Token);
            return new ControlPeer(tcp, ssl);
        }
        catch
        {
            tcp.Dispose();
            throw;
        }
    }

    public async Task SendAsync(long id, ControlMessage message) => await SendRawAsync(ControlFrame.Encode(id, message));

    public async Task SendRawAsync(byte[] bytes)
    {
        await _ssl.WriteAsync(bytes);
        await _ssl.FlushAsync();
    }

    /// <summary>The next frame; null when the server closed the connection (cleanly or not).</summary>
    public async Task<ControlEnvelope?> ReadAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            return (await ControlFrame.ReadAsync(_ssl, _header, cts.Token)).Envelope;
        }
        catch (Exception e) when (e is IOException or AuthenticationException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>Sends a request and returns the reply that carries its id.</summary>
    public async Task<ControlMessage> RequestAsync(long id, ControlMessage request, TimeSpan? timeout = null)
    {
        await SendAsync(id, request);
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) throw new TimeoutException($"no reply to '{request.Type}' (id {id})");
            var frame = await ReadAsync(left) ?? throw new IOException($"the home server closed the connection instead of answering '{request.Type}'");
            if (frame.Id == id || frame.Message is ErrorReply { } && frame.Id == 0) return frame.Message;
        }
    }

    /// <summary>True when the server ends the connection within <paramref name="timeout"/> (frames before the end are skipped).</summary>
    public async Task<bool> ClosedWithinAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        var sink = new byte[4096];
        while (DateTime.UtcNow < deadline)
        {
            using var cts = new CancellationTokenSource(deadline - DateTime.UtcNow);
            try
            {
                if (await _ssl.ReadAsync(sink, cts.Token) == 0) return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
            catch (Exception e) when (e is IOException or AuthenticationException or ObjectDisposedException)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Enrolls a new device key with <paramref name="code"/> over a certificate-less connection from <paramref name="from"/>; returns the device certificate with its key.</summary>
    public static async Task<X509Certificate2> EnrollAsync(int port, string code, string from = "127.0.0.1")
    {
        var reply = await TryEnrollAsync(port, EnrollmentCode.Split(code).Secret, from);
        return reply as X509Certificate2 ?? throw new InvalidOperationException($"enrollment refused: {reply}");
    }

    /// <summary>One enroll request; the device certificate (with its key) or the refusal.</summary>
    public static async Task<object> TryEnrollAsync(int port, string secret, string from, ControlPeer? over = null, long id = 1)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var peer = over ?? await ConnectAsync(port, from);
        try
        {
            var reply = await peer.RequestAsync(id, new EnrollRequest(secret, key.ExportSubjectPublicKeyInfo()));
            if (reply is not EnrolledReply enrolled) return reply;
            using var issued = X509CertificateLoader.LoadCertificate(enrolled.Certificate);
            using var withKey = issued.CopyWithPrivateKey(key);
            return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        }
        finally
        {
            if (over is null) await peer.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _ssl.DisposeAsync();
        _tcp.Dispose();
    }
}
