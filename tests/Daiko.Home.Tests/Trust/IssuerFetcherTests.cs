using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Daiko.Home.Trust;
using Daiko.Tls;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Daiko.Home.Tests.Trust;

/// <summary>
/// A market chain without its intermediate, whose leaf names the intermediate's http URL (served by a
/// real HTTP listener on loopback): nothing is fetched unless the owner opted in, and then only from an
/// allowed address, within 2 s and 64 KiB, once per URL.
/// </summary>
public sealed class IssuerFetcherTests : IDisposable
{
    private readonly IssuerServer _server = new();
    private readonly X509Certificate2 _root;
    private readonly X509Certificate2 _intermediate;
    private readonly byte[] _leaf;

    public IssuerFetcherTests()
    {
        // Names unique to this run: an intermediate the platform once downloaded stays in the user's CA store and would be found by name.
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var rootRequest = new CertificateRequest($"CN=Issuer Test Root {Guid.NewGuid():N}", rootKey, HashAlgorithmName.SHA256);
        rootRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        rootRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        _root = rootRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        using var intermediateKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var intermediateRequest = new CertificateRequest($"CN=Issuer Test Intermediate {Guid.NewGuid():N}", intermediateKey, HashAlgorithmName.SHA256);
        intermediateRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        intermediateRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        using var intermediate = intermediateRequest.Create(_root, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(20), [7, 7]);
        _intermediate = intermediate.CopyWithPrivateKey(intermediateKey);
        _server.Body = _intermediate.RawData;
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafRequest = new CertificateRequest("CN=market.example", leafKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("market.example");
        leafRequest.CertificateExtensions.Add(san.Build());
        leafRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.1") }, false));
        leafRequest.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(null, [$"https://127.0.0.1:{_server.Port}/tls.cer", $"http://127.0.0.1:{_server.Port}/intermediate.cer"]));
        using var leaf = leafRequest.Create(_intermediate, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(10), [1, 2, 3]);
        _leaf = leaf.RawData;
    }

    private X509ChainValidator Validator(IIssuerFetcher? issuers) => new([_root], issuers: issuers);

    private async Task<CertificateVerdict> ValidateAsync(IIssuerFetcher? issuers) => await Validator(issuers).ValidateAsync("market.example", [_leaf], CancellationToken.None);

    [Fact]
    public async Task WithoutTheOption_AChainMissingItsIntermediate_FailsAndNothingIsFetched()
    {
        Assert.Equal(CertificateProblem.UntrustedRoot, (await ValidateAsync(null)).Problem);
        Assert.Equal(0, _server.Requests);
    }

    [Fact]
    public async Task WithTheOption_TheMissingIntermediateIsFetchedOnce_OverHttpOnly_AndTheChainValidates()
    {
        using var fetcher = new IssuerFetcher(NullLogger.Instance, allowPrivate: true);

        Assert.True((await ValidateAsync(fetcher)).Trusted);
        Assert.True((await ValidateAsync(fetcher)).Trusted);

        Assert.Equal(["/intermediate.cer"], _server.Paths);
    }

    [Fact]
    public async Task AnIssuerOnAPrivateAddress_IsNotFetched()
    {
        using var fetcher = new IssuerFetcher(NullLogger.Instance);

        Assert.Equal(CertificateProblem.UntrustedRoot, (await ValidateAsync(fetcher)).Problem);
        Assert.Equal(0, _server.Requests);
    }

    [Fact]
    public async Task AnAnswerOver64KiB_IsNotUsed()
    {
        using var fetcher = new IssuerFetcher(NullLogger.Instance, allowPrivate: true);
        // A PEM certificate that would be read if the whole answer were: the cap, not the parser, refuses it.
        _server.Body = Encoding.ASCII.GetBytes(_intermediate.ExportCertificatePem() + "\n" + new string(' ', IssuerFetcher.MaxBytes));

        Assert.Equal(CertificateProblem.UntrustedRoot, (await ValidateAsync(fetcher)).Problem);
        Assert.Equal(1, _server.Requests);
    }

    [Fact]
    public async Task ASlowAnswer_IsGivenUpAfterTwoSeconds()
    {
        using var fetcher = new IssuerFetcher(NullLogger.Instance, allowPrivate: true);
        _server.Delay = TimeSpan.FromSeconds(10);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        Assert.Equal(CertificateProblem.UntrustedRoot, (await ValidateAsync(fetcher)).Problem);

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(6), $"the validation waited {clock.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(1, _server.Requests);
    }

    public void Dispose()
    {
        _server.Dispose();
        _root.Dispose();
        _intermediate.Dispose();
    }

    /// <summary>A minimal HTTP/1.1 server on 127.0.0.1 that answers every GET with <see cref="Body"/>, after <see cref="Delay"/>, and records the paths.</summary>
    private sealed class IssuerServer : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly List<string> _paths = [];
        private readonly Task _serving;

        public IssuerServer()
        {
            _listener.Start();
            _serving = ServeAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public byte[] Body { get; set; } = [];

        public TimeSpan Delay { get; set; }

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
                    while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                    {
                        var n = await stream.ReadAsync(buffer, _stop.Token);
                        if (n == 0) break;
                        request.Append(Encoding.ASCII.GetString(buffer, 0, n));
                    }
                    lock (_paths) _paths.Add(request.ToString().Split(' ')[1]);
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
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
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
}
