using Daiko.TestSupport;
using Daiko.Tls.Tls12;

namespace Daiko.Tls.Tests.Tls12;

/// <summary>
/// The home server's check before its card signs a TLS 1.2 CertificateVerify in assist mode: a real
/// transcript (captured from a handshake with OpenSSL) passes; anything else — arbitrary bytes, a
/// forged ServerKeyExchange, another client chain, a market the home server does not trust, an extra
/// or missing message, a scheme the market did not ask for — is refused.
/// </summary>
public sealed class AssistTranscriptTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("daiko-assist12");
    private TestPki _pki = null!;
    private byte[] _transcript = [];
    private IReadOnlyList<byte[]> _chain = [];

    public async Task InitializeAsync()
    {
        _pki = TestPki.Create(_dir.Path);
        using var peer = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { Versions = "1.2" });
        var credential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath);
        var capture = new CapturingSigner(credential.Signer);
        _chain = credential.CertificateChain;
        await using var connection = await TlsClient.ConnectAsync("127.0.0.1", peer.Port, new TlsClientOptions
        {
            ServerName = "localhost",
            Versions = TlsVersions.Both,
            ClientCredential = new ClientCredential(_chain, capture),
            CertificateValidator = new X509ChainValidator([_pki.Root]),
        }, CancellationToken.None);
        _transcript = capture.Content!;
    }

    public Task DisposeAsync()
    {
        _dir.Dispose();
        return Task.CompletedTask;
    }

    private ValueTask<string?> CheckAsync(byte[] transcript, IReadOnlyList<byte[]>? chain = null, TestPki? trusted = null) =>
        AssistTranscript12.CheckAsync(transcript, SignatureScheme.EcdsaSecp256r1Sha256, chain ?? _chain, new X509ChainValidator([(trusted ?? _pki).Root]), CancellationToken.None);

    /// <summary>Offset and length (header included) of the <paramref name="index"/>-th message.</summary>
    private (int Offset, int Length) Message(int index)
    {
        var p = 0;
        for (var i = 0; ; i++)
        {
            var length = 4 + ((_transcript[p + 1] << 16) | (_transcript[p + 2] << 8) | _transcript[p + 3]);
            if (i == index) return (p, length);
            p += length;
        }
    }

    [Fact]
    public async Task Accepts_TheTranscriptOfARealHandshake()
    {
        Assert.Null(await CheckAsync(_transcript));
    }

    [Fact]
    public async Task Refuses_ArbitraryBytes_AndATls13Hash()
    {
        Assert.NotNull(await CheckAsync("please sign this"u8.ToArray()));
        Assert.NotNull(await CheckAsync(new byte[32]));
    }

    [Fact]
    public async Task Refuses_AForgedServerKeyExchange()
    {
        var forged = (byte[])_transcript.Clone();
        var (offset, length) = Message(3);
        forged[offset + length - 1] ^= 0x01;

        Assert.Contains("ServerKeyExchange", await CheckAsync(forged), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_AnotherClientChain()
    {
        var other = _pki.IssueClient("mallory", "CN=Mallory");

        Assert.Contains("owner's chain", await CheckAsync(_transcript, [other.Der]), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_AMarketTheHomeServerDoesNotTrust()
    {
        var stranger = TestPki.Create(Path.Combine(_dir.Path, "other"), rootName: "Someone Else");

        Assert.Contains("not trusted", await CheckAsync(_transcript, trusted: stranger), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_AMissingOrExtraMessage()
    {
        var (offset, length) = Message(4);
        var missing = _transcript[..offset].Concat(_transcript[(offset + length)..]).ToArray();
        byte[] extra = [.. _transcript, 20, 0, 0, 12, .. new byte[12]];

        Assert.NotNull(await CheckAsync(missing));
        Assert.NotNull(await CheckAsync(extra));
        Assert.NotNull(await CheckAsync(_transcript[..^1]));
    }

    [Fact]
    public async Task Refuses_AServerHelloWithTheDowngradeSentinel_ToAClientThatOfferedTls13()
    {
        var downgraded = (byte[])_transcript.Clone();
        var (offset, _) = Message(1);
        // ServerHello: header (4), legacy_version (2), random (32) whose last 8 bytes say "DOWNGRD" and 01 (RFC 8446 §4.1.3).
        "DOWNGRD\u0001"u8.CopyTo(downgraded.AsSpan(offset + 4 + 2 + 24, 8));

        Assert.Contains("downgrade sentinel", await CheckAsync(downgraded), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_AServerKeyExchangeSignedWithASchemeTheClientHelloDidNotOffer()
    {
        var (helloOffset, helloLength) = Message(0);
        var (exchangeOffset, exchangeLength) = Message(3);
        // ServerKeyExchange: curve type (1), group (2), point (1 + n), then the scheme's two bytes.
        var exchange = _transcript.AsSpan(exchangeOffset + 4, exchangeLength - 4);
        var scheme = exchange.Slice(3 + 1 + exchange[3], 2).ToArray();
        var edited = (byte[])_transcript.Clone();
        var hello = edited.AsSpan(helloOffset, helloLength);
        // In the ClientHello's signature_algorithms (extension 13), that scheme becomes another the engine knows (Ed25519).
        var list = SignatureAlgorithms(hello);
        for (var i = 0; i < list.Length; i += 2)
        {
            if (list[i] == scheme[0] && list[i + 1] == scheme[1]) { list[i] = 0x08; list[i + 1] = 0x07; }
        }

        Assert.Contains("did not offer", await CheckAsync(edited), StringComparison.Ordinal);
        Assert.Null(await CheckAsync(_transcript));
    }

    [Fact]
    public async Task Refuses_ASchemeTheMarketDidNotAskFor()
    {
        var refusal = await AssistTranscript12.CheckAsync(_transcript, SignatureScheme.Ed25519, _chain, new X509ChainValidator([_pki.Root]), CancellationToken.None);

        Assert.Contains("did not ask", refusal, StringComparison.Ordinal);
    }

    /// <summary>The scheme list of a ClientHello's signature_algorithms (header included in <paramref name="hello"/>).</summary>
    private static Span<byte> SignatureAlgorithms(Span<byte> hello)
    {
        var p = 4 + 2 + 32;
        p += 1 + hello[p];                                  // session id
        p += 2 + ((hello[p] << 8) | hello[p + 1]);           // cipher suites
        p += 1 + hello[p];                                  // compression methods
        p += 2;                                             // extensions' length
        while (true)
        {
            var type = (hello[p] << 8) | hello[p + 1];
            var length = (hello[p + 2] << 8) | hello[p + 3];
            if (type == 13) return hello.Slice(p + 6, (hello[p + 4] << 8) | hello[p + 5]);
            p += 4 + length;
        }
    }

    private sealed class CapturingSigner(ITlsSigner inner) : ITlsSigner
    {
        public byte[]? Content { get; private set; }

        public IReadOnlyList<SignatureScheme> SupportedSchemes => inner.SupportedSchemes;

        public ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
        {
            Content = content.ToArray();
            return inner.SignAsync(scheme, content, cancellationToken);
        }
    }
}
