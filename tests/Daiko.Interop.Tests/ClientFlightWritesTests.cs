using System.Net.Sockets;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Interop.Tests;

/// <summary>
/// The client's second flight (Certificate, CertificateVerify, Finished; in TLS 1.2 also
/// ClientKeyExchange and ChangeCipherSpec) leaves in one transport write, so the market wakes once
/// for it rather than once a message: a full handshake with a client certificate is two writes,
/// the ClientHello and that flight. Against real servers, so the server still takes the coalesced
/// flight (and sees the user).
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

    [Theory]
    [MemberData(nameof(PeersAndVersions))]
    public async Task AFullHandshakeWithAClientCertificate_IsTwoTransportWrites(string name, string version)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path, new TlsPeerOptions { Versions = version });
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", peer.Port, cts.Token);
        var transport = new WriteCountingStream(tcp.GetStream());
        var options = new TlsClientOptions
        {
            ServerName = "localhost",
            Versions = TlsVersions.Both,
            ClientCredential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath),
            CertificateValidator = new X509ChainValidator([_pki.Root]),
            HandshakeTimeout = TimeSpan.FromSeconds(10),
        };

        await using var connection = await TlsClient.ConnectAsync(transport, options, cts.Token);

        Assert.Equal(version == "1.2" ? TlsVersions.Tls12 : TlsVersions.Tls13, connection.Version);
        Assert.Equal(2, transport.Writes);
        var body = await EngineInteropTests.GetAsync(connection, peer.Host, peer.IdentityPath, cts.Token);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }

    /// <summary>Passes everything through to a real socket's stream and counts the writes.</summary>
    private sealed class WriteCountingStream(Stream inner) : Stream
    {
        public int Writes { get; private set; }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count)
        {
            Writes++;
            inner.Write(buffer, offset, count);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Writes++;
            return inner.WriteAsync(buffer, cancellationToken);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
