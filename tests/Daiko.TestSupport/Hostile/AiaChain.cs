using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Daiko.TestSupport.Hostile;

/// <summary>
/// A market chain whose server leaves the intermediate out: a root, an intermediate (served by
/// <see cref="Server"/>, a real HTTP listener on 127.0.0.1), and a leaf for market.example whose
/// Authority Information Access names an https and then an http URL of the intermediate. Names are
/// unique to each instance: an intermediate the platform once downloaded stays in the user's CA store
/// and would be found by name.
/// </summary>
public sealed class AiaChain : IDisposable
{
    public AiaChain()
    {
        var unique = Guid.NewGuid().ToString("N");
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var rootRequest = new CertificateRequest($"CN=AIA Test Root {unique}", rootKey, HashAlgorithmName.SHA256);
        rootRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        rootRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        Root = rootRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        using var intermediateKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var intermediateRequest = new CertificateRequest($"CN=AIA Test Intermediate {unique}", intermediateKey, HashAlgorithmName.SHA256);
        intermediateRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        intermediateRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        using var intermediate = intermediateRequest.Create(Root, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(20), [7, 7]);
        Intermediate = intermediate.CopyWithPrivateKey(intermediateKey);
        Server = new CertificateHttpServer { Body = Intermediate.RawData };
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafRequest = new CertificateRequest("CN=market.example", leafKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("market.example");
        leafRequest.CertificateExtensions.Add(san.Build());
        leafRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.1") }, false));
        leafRequest.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(null, [$"https://127.0.0.1:{Server.Port}/tls.cer", $"http://127.0.0.1:{Server.Port}/intermediate.cer"]));
        using var leaf = leafRequest.Create(Intermediate, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(10), [1, 2, 3]);
        Leaf = leaf.RawData;
    }

    public X509Certificate2 Root { get; }

    public X509Certificate2 Intermediate { get; }

    /// <summary>The leaf (DER), sent alone.</summary>
    public byte[] Leaf { get; }

    public CertificateHttpServer Server { get; }

    public void Dispose()
    {
        Server.Dispose();
        Root.Dispose();
        Intermediate.Dispose();
    }
}

/// <summary>A minimal HTTP/1.1 server on 127.0.0.1 that answers every GET with <see cref="Body"/>, after <see cref="Delay"/>, and records the paths asked.</summary>
public sealed class CertificateHttpServer : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<string> _paths = [];
    private readonly Task _serving;

    public CertificateHttpServer()
    {
        _listener.Start();
        _serving = ServeAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public byte[] Body { get; set; } = [];

    public TimeSpan Delay { get; set; }

    /// <summary>Connections accepted (a TLS ClientHello counts too).</summary>
    public int Requests
    {
        get { lock (_paths) return _paths.Count; }
    }

    public List<string> Paths
    {
        get { lock (_paths) return [.. _paths]; }
    }

    private async Task ServeAsync()
    {
        try
        {
            while (true)
            {
                using var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                var stream = client.GetStream();
                var request = new StringBuilder();
                var buffer = new byte[4096];
                while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal) && request.Length < 65536)
                {
                    var n = await stream.ReadAsync(buffer, _stop.Token);
                    if (n == 0) break;
                    request.Append(Encoding.Latin1.GetString(buffer, 0, n));
                }
                var words = request.ToString().Split(' ');
                lock (_paths) _paths.Add(words.Length > 1 ? words[1] : "(not HTTP)");
                await Task.Delay(Delay, _stop.Token);
                try
                {
                    await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/pkix-cert\r\nContent-Length: {Body.Length}\r\nConnection: close\r\n\r\n"), _stop.Token);
                    await stream.WriteAsync(Body, _stop.Token);
                }
                catch (IOException)
                {
                    // The client gave up first.
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException or IOException)
        {
            // Stopped.
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _serving.GetAwaiter().GetResult();
    }
}
