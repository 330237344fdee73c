using System.Net.Sockets;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Interop.Tests;

/// <summary>
/// The client's second flight leaves in one transport write, so the market wakes once for it rather
/// than once a record: a handshake is two writes, the ClientHello and that flight. In TLS 1.2 the
/// flight is several records (Certificate, ClientKeyExchange, CertificateVerify, change_cipher_spec,
/// Finished; resumed: change_cipher_spec, Finished), held in the record layer until the Finished; in
/// TLS 1.3 it is one record (the handshake messages share it). A signer whose key is elsewhere (the home
/// card) gets a TLS 1.3 Certificate written first, so that the server checks the chain while it signs:
/// three writes. Bytes are counted as written. Against real servers, so the server still takes the flight
/// (and sees the user).
/// </summary>
public sealed class ClientFlightWritesTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-flight");
    private readonly TestPki _pki;

    public ClientFlightWritesTests()
    {
        _pki = TestPki.Create(_dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string, string> PeersAndVersions => new()
    {
        { "openssl", "1.3" }, { "gnutls", "1.3" }, { "nginx", "1.3" },
        { "openssl", "1.2" }, { "gnutls", "1.2" }, { "nginx", "1.2" },
    };

    public static TheoryData<string> Peers => new() { "openssl", "gnutls", "nginx" };

    private TlsClientOptions Options(TlsCounters counters) => new()
    {
        ServerName = "localhost",
        Versions = TlsVersions.Both,
        ClientCredential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath),
        CertificateValidator = new X509ChainValidator([_pki.Root]),
        Counters = counters,
        HandshakeTimeout = TimeSpan.FromSeconds(10),
    };

    private static async Task<(TlsConnection Connection, WriteCountingStream Transport)> ConnectAsync(ITlsPeer peer, TlsClientOptions options, CancellationToken ct)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", peer.Port, ct);
        var transport = new WriteCountingStream(tcp.GetStream());
        return (await TlsClient.ConnectAsync(transport, options, ct), transport);
    }

    [Theory]
    [MemberData(nameof(PeersAndVersions))]
    public async Task AFullHandshakeWithAClientCertificate_IsTwoTransportWrites(string name, string version)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path, new TlsPeerOptions { Versions = version });
        var counters = new TlsCounters();

        var (connection, transport) = await ConnectAsync(peer, Options(counters), cts.Token);
        await using var _ = connection;

        Assert.Equal(version == "1.2" ? TlsVersions.Tls12 : TlsVersions.Tls13, connection.Version);
        Assert.Equal(2, transport.Writes);
        Assert.Equal(transport.BytesWritten, counters.BytesSent);
        var body = await EngineInteropTests.GetAsync(connection, peer.Host, peer.IdentityPath, cts.Token);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
        Assert.Equal(transport.BytesWritten, counters.BytesSent);
    }

    [Theory]
    [MemberData(nameof(PeersAndVersions))]
    public async Task ASignerElsewhere_FindsATls13CertificateWrittenBeforeItSigns_AndATls12OneStillBuffered(string name, string version)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path, new TlsPeerOptions { Versions = version });
        var counters = new TlsCounters();
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", peer.Port, cts.Token);
        var transport = new WriteCountingStream(tcp.GetStream());
        var software = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath);
        var elsewhere = new SignerElsewhere(software.Signer, () => transport.Writes);
        var options = Options(counters) with { ClientCredential = software with { Signer = elsewhere } };

        await using var connection = await TlsClient.ConnectAsync(transport, options, cts.Token);

        Assert.Equal(version == "1.2" ? TlsVersions.Tls12 : TlsVersions.Tls13, connection.Version);
        // TLS 1.3: the ClientHello, then the (encrypted) Certificate, before the signer was called; the rest
        // (CertificateVerify, Finished) in one more write. TLS 1.2, whose Certificate is in the clear: only the
        // ClientHello, and the whole flight after the signature.
        Assert.Equal(version == "1.3" ? [2] : [1], elsewhere.WritesWhenAsked);
        Assert.Equal(version == "1.3" ? 3 : 2, transport.Writes);
        Assert.Equal(transport.BytesWritten, counters.BytesSent);
        var body = await EngineInteropTests.GetAsync(connection, peer.Host, peer.IdentityPath, cts.Token);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }

    /// <summary>A signer that says it signs elsewhere (as the home card does), noting how many writes had left when it was asked.</summary>
    private sealed class SignerElsewhere(ITlsSigner inner, Func<int> writes) : ITlsSigner
    {
        public List<int> WritesWhenAsked { get; } = [];

        public IReadOnlyList<SignatureScheme> SupportedSchemes => inner.SupportedSchemes;

        public bool SignsElsewhere => true;

        public ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
        {
            WritesWhenAsked.Add(writes());
            return inner.SignAsync(scheme, content, cancellationToken);
        }
    }

    [Theory]
    [MemberData(nameof(Peers))]
    public async Task ATls12Resumption_SendsChangeCipherSpecAndFinishedInOneWrite(string name)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path, new TlsPeerOptions { Versions = "1.2" });
        SessionTicket ticket;
        var (first, _) = await ConnectAsync(peer, Options(new TlsCounters()), cts.Token);
        await using (first)
        {
            ticket = Assert.Single(first.Tickets);
            await EngineInteropTests.GetAsync(first, peer.Host, peer.IdentityPath, cts.Token);
        }
        var counters = new TlsCounters();

        var (resumed, transport) = await ConnectAsync(peer, Options(counters) with { ResumptionTicket = ticket }, cts.Token);
        await using var __ = resumed;

        Assert.True(resumed.Resumed, $"{name} did not resume:\n{peer.Log}");
        Assert.Equal(2, transport.Writes);
        Assert.Equal(transport.BytesWritten, counters.BytesSent);
        var body = await EngineInteropTests.GetAsync(resumed, peer.Host, peer.IdentityPath, cts.Token);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("openssl")]
    [InlineData("gnutls")] // (nginx's "optional" still asks for a certificate)
    public async Task ATls12HandshakeWithoutACertificateRequest_IsTwoTransportWrites(string name)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path, new TlsPeerOptions { Versions = "1.2", RequireClientCertificate = false });
        var counters = new TlsCounters();

        var (connection, transport) = await ConnectAsync(peer, Options(counters), cts.Token);
        await using var _ = connection;

        Assert.Equal(TlsVersions.Tls12, connection.Version);
        Assert.Equal(2, transport.Writes);
        Assert.Equal(transport.BytesWritten, counters.BytesSent);
    }

    /// <summary>Passes everything through to a real socket's stream and counts the writes.</summary>
    private sealed class WriteCountingStream(Stream inner) : PassThroughStream(inner)
    {
        public int Writes { get; private set; }

        public long BytesWritten { get; private set; }

        public override void Write(byte[] buffer, int offset, int count)
        {
            Writes++;
            BytesWritten += count;
            Inner.Write(buffer, offset, count);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Writes++;
            BytesWritten += buffer.Length;
            return Inner.WriteAsync(buffer, cancellationToken);
        }
    }
}
