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
    public async Task Refuses_ASchemeTheMarketDidNotAskFor()
    {
        var refusal = await AssistTranscript12.CheckAsync(_transcript, SignatureScheme.Ed25519, _chain, new X509ChainValidator([_pki.Root]), CancellationToken.None);

        Assert.Contains("did not ask", refusal, StringComparison.Ordinal);
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
