using System.Security.Cryptography.X509Certificates;
using Daiko.TestSupport;
using Daiko.Tls.Crypto;
using Daiko.Tls.Handshake;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Tests.Rfc8448;

namespace Daiko.Tls.Tests.Handshake;

/// <summary>
/// The home server's check before its card signs a TLS 1.3 CertificateVerify in assist mode: the
/// transcript of a real handshake of the engine with OpenSSL (handed to the signer by the engine) passes,
/// with and without a HelloRetryRequest, and gives the content the engine itself signs; RFC 8448 §6 gives
/// the content the trace's client signed. Anything else — another name, a chain not trusted for it, an
/// altered or forged market signature, another client chain, a ClientHello offering a PSK, an extra,
/// missing or truncated message, a scheme the market did not ask for — is refused.
/// </summary>
public sealed class AssistTranscript13Tests : IAsyncLifetime
{
    private const int ClientHello = 0, ServerHello = 1, EncryptedExtensions = 2, CertificateRequest = 3, MarketCertificate = 4, MarketVerify = 5, MarketFinished = 6, ClientCertificate = 7;

    private readonly TempDirectory _dir = new("daiko-assist13");
    private TestPki _pki = null!;
    private OpenSslServer _market = null!;
    private ClientCredential _credential = null!;
    private Captured _handshake = null!;

    private sealed record Captured(byte[] Content, byte[] Transcript);

    public async Task InitializeAsync()
    {
        _pki = TestPki.Create(_dir.Path);
        _credential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath);
        _market = await OpenSslServer.StartAsync(_pki);
        _handshake = await CaptureAsync(_market.Port);
    }

    public Task DisposeAsync()
    {
        _market.Dispose();
        _dir.Dispose();
        return Task.CompletedTask;
    }

    /// <summary>A full handshake of the engine with the market, and what the engine handed its signer.</summary>
    private async Task<Captured> CaptureAsync(int port, string serverName = "localhost", SessionTicket? ticket = null)
    {
        var capture = new CapturingSigner(_credential.Signer);
        await using (await TlsClient.ConnectAsync("127.0.0.1", port, new TlsClientOptions
        {
            ServerName = serverName,
            ClientCredential = new ClientCredential(_credential.CertificateChain, capture),
            CertificateValidator = new X509ChainValidator([_pki.Root]),
            InsecureSkipValidation = serverName != "localhost",
            ResumptionTicket = ticket,
        }, CancellationToken.None))
        {
        }
        return new Captured(capture.Content!, capture.Transcript!);
    }

    private ValueTask<(byte[]? Content, string? Refusal)> CheckAsync(byte[] transcript, IReadOnlyList<byte[]>? chain = null, IServerCertificateValidator? validator = null,
        SignatureScheme scheme = SignatureScheme.EcdsaSecp256r1Sha256) =>
        AssistTranscript13.CheckAsync(transcript, scheme, chain ?? _credential.CertificateChain, validator ?? new X509ChainValidator([_pki.Root]), CancellationToken.None);

    private static async Task<string> RefusedAsync(ValueTask<(byte[]? Content, string? Refusal)> check)
    {
        var (content, refusal) = await check;
        Assert.Null(content);
        return Assert.IsType<string>(refusal);
    }

    /// <summary>The transcript's messages, each with its header.</summary>
    internal static List<byte[]> Messages(byte[] transcript)
    {
        var messages = new List<byte[]>();
        for (var p = 0; p < transcript.Length;)
        {
            var length = 4 + ((transcript[p + 1] << 16) | (transcript[p + 2] << 8) | transcript[p + 3]);
            messages.Add(transcript[p..(p + length)]);
            p += length;
        }
        return messages;
    }

    private byte[] With(int index, Func<byte[], byte[]> change)
    {
        var messages = Messages(_handshake.Transcript);
        messages[index] = change((byte[])messages[index].Clone());
        return [.. messages.SelectMany(m => m)];
    }

    [Fact]
    public async Task Accepts_ARealHandshake_AndGivesTheContentTheEngineSigns()
    {
        Assert.Equal(new[] { 1, 2, 8, 13, 11, 15, 20, 11 }, Messages(_handshake.Transcript).Select(m => (int)m[0]));

        var (content, refusal) = await CheckAsync(_handshake.Transcript);

        Assert.Null(refusal);
        Assert.Equal(Convert.ToHexString(_handshake.Content), Convert.ToHexString(content!));
    }

    [Fact]
    public async Task Accepts_AHandshakeAfterAHelloRetryRequest()
    {
        // The market takes only P-256: the engine's X25519 share gets a HelloRetryRequest.
        using var market = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { ExtraArguments = ["-groups", "P-256"] });
        var handshake = await CaptureAsync(market.Port);
        Assert.Equal(new[] { 254, 2, 1, 2, 8, 13, 11, 15, 20, 11 }, Messages(handshake.Transcript).Select(m => (int)m[0]));

        var (content, refusal) = await CheckAsync(handshake.Transcript);

        Assert.Null(refusal);
        Assert.Equal(Convert.ToHexString(handshake.Content), Convert.ToHexString(content!));
        // Without its HelloRetryRequest (or its message_hash) it is not one handshake.
        var messages = Messages(handshake.Transcript);
        Assert.NotNull((await CheckAsync([.. messages.Skip(2).SelectMany(m => m)])).Refusal);
        Assert.NotNull((await CheckAsync([.. messages.Skip(1).SelectMany(m => m)])).Refusal);
    }

    /// <summary>RFC 8448 §6: the handshake through the client's Certificate, and the client's chain.</summary>
    private static (Rfc8448Trace Trace, byte[] Transcript, byte[][] ClientChain) Rfc8448ClientAuthentication()
    {
        var trace = Rfc8448Trace.Section("6.  Client Authentication");
        var serverFinished = trace.Get("{server}  construct a Finished", "Finished");
        var flight = trace.Get("{server}  send handshake record", "payload", 1);
        Assert.True(flight.AsSpan().EndsWith(serverFinished));
        var clientCertificate = trace.Get("{client}  construct a Certificate", "Certificate");
        byte[] transcript =
        [
            .. trace.Get("{client}  construct a ClientHello", "ClientHello"), .. trace.Get("{server}  construct a ServerHello", "ServerHello"),
            .. flight, .. clientCertificate,
        ];
        var certLength = (clientCertificate[8] << 16) | (clientCertificate[9] << 8) | clientCertificate[10];
        return (trace, transcript, [clientCertificate[11..(11 + certLength)]]);
    }

    [Fact]
    public async Task Rfc8448ClientAuthentication_GivesTheContentTheTracesClientSigned()
    {
        var (trace, transcript, clientChain) = Rfc8448ClientAuthentication();
        var recording = new RecordingValidator();

        var (content, refusal) = await AssistTranscript13.CheckAsync(transcript, SignatureScheme.RsaPssRsaeSha256, clientChain, recording, CancellationToken.None);

        Assert.Null(refusal);
        Assert.Equal("server", recording.Name);
        using var client = X509CertificateLoader.LoadCertificate(clientChain[0]);
        var verify = trace.Get("{client}  construct a CertificateVerify", "CertificateVerify");
        Assert.True(SignatureVerifier.Verify(client, SignatureScheme.RsaPssRsaeSha256, content!, verify[8..]), "the trace's client signature does not verify over the content");
        Assert.Equal(Convert.ToHexString(SignatureVerifier.Content(server: false, CipherSuiteInfo.Aes128Gcm.HashData(transcript))), Convert.ToHexString(content!));
    }

    /// <summary>
    /// Mutants of the RFC 8448 §6 transcript: each is refused with a sentence (never an exception), or
    /// accepted only when everything the market signed — through its CertificateVerify — is unchanged.
    /// </summary>
    [Fact]
    public void Mutants_AreRefusedCleanly_UnlessWhatTheMarketSignedIsUnchanged()
    {
        var (_, transcript, clientChain) = Rfc8448ClientAuthentication();
        var signedEnd = Messages(transcript).Take(MarketVerify + 1).Sum(m => m.Length);
        var accepted = 0;
        var report = MutationFuzzer.Run([transcript], input =>
        {
            var (content, refusal) = AssistTranscript13.CheckAsync(input, SignatureScheme.RsaPssRsaeSha256, clientChain, new RecordingValidator(), CancellationToken.None)
                .AsTask().GetAwaiter().GetResult();
            Assert.True(content is null != refusal is null);
            if (content is null) return;
            accepted++;
            Assert.True(input.Length >= signedEnd && input.AsSpan(0, signedEnd).SequenceEqual(transcript.AsSpan(0, signedEnd)),
                $"a mutant the market never signed was accepted: {Convert.ToHexString(input)}");
        }, _ => false, iterations: 3000, timeBudget: TimeSpan.FromSeconds(20));

        Assert.True(report.Iterations > 1000, $"only {report.Iterations} inputs ran");
        Assert.True(accepted >= 1);
    }

    [Fact]
    public async Task GivesTheValidatorTheClientHellosName_AndRefusesAHandshakeNamingAnotherMarket()
    {
        var recording = new RecordingValidator();
        Assert.Null((await CheckAsync(_handshake.Transcript, validator: recording)).Refusal);
        Assert.Equal("localhost", recording.Name);

        // A real handshake with the same market under another name: its chain is not for that name.
        var other = await CaptureAsync(_market.Port, serverName: "market-b.test");
        Assert.Contains("not trusted for market-b.test", await RefusedAsync(CheckAsync(other.Transcript)), StringComparison.Ordinal);

        // The name changed in the transcript: not trusted for it either.
        var renamed = With(ClientHello, m => ReplaceAscii(m, "localhost", "localhosx"));
        Assert.Contains("not trusted for localhosx", await RefusedAsync(CheckAsync(renamed)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_AMarketChainNotTrusted()
    {
        var stranger = TestPki.Create(Path.Combine(_dir.Path, "other"), rootName: "Someone Else");

        Assert.Contains("not trusted for localhost", await RefusedAsync(CheckAsync(_handshake.Transcript, validator: new X509ChainValidator([stranger.Root]))), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_AForgedOrAlteredMarketCertificateVerify()
    {
        var forged = With(MarketVerify, m =>
        {
            m[^1] ^= 0x01;
            return m;
        });
        // Any earlier message altered: the market's signature no longer covers the transcript.
        var altered = With(ServerHello, m =>
        {
            m[10] ^= 0x01;
            return m;
        });
        // EncryptedExtensions swapped for other well-formed ones (empty, or a record_size_limit if they were empty).
        var extensions = With(EncryptedExtensions, m => m.Length > 6 ? [8, 0, 0, 2, 0, 0] : [8, 0, 0, 8, 0, 6, 0, 28, 0, 2, 0x40, 0]);

        Assert.Contains("CertificateVerify signature does not verify", await RefusedAsync(CheckAsync(forged)), StringComparison.Ordinal);
        Assert.Contains("CertificateVerify signature does not verify", await RefusedAsync(CheckAsync(altered)), StringComparison.Ordinal);
        Assert.Contains("CertificateVerify signature does not verify", await RefusedAsync(CheckAsync(extensions)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_AClientCertificateNotTheOwners()
    {
        var other = _pki.IssueClient("mallory", "CN=Mallory");

        Assert.Contains("owner's chain", await RefusedAsync(CheckAsync(_handshake.Transcript, chain: [other.Der])), StringComparison.Ordinal);
        Assert.Contains("owner's chain", await RefusedAsync(CheckAsync(_handshake.Transcript, chain: [.. _credential.CertificateChain, _pki.Root.RawData])), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_AClientHelloOfferingAPsk_EvenWhenTheMarketWentOnToAFullHandshake()
    {
        // A ticket the market cannot read: the engine offers it, the market ignores it and asks for a certificate.
        var ticket = new SessionTicket([1, 2, 3, 4], new byte[32], CipherSuite.Aes128GcmSha256, "localhost", null, 3600, 1, 0, DateTimeOffset.UtcNow, [0]);
        var offered = await CaptureAsync(_market.Port, ticket: ticket);

        Assert.Contains("pre_shared_key", await RefusedAsync(CheckAsync(offered.Transcript)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_AnExtraMissingOrTruncatedMessage_AndBytesThatAreNoHandshake()
    {
        var messages = Messages(_handshake.Transcript);
        byte[] Without(int index) => [.. messages.Where((_, i) => i != index).SelectMany(m => m)];

        foreach (var index in new[] { ClientHello, ServerHello, EncryptedExtensions, CertificateRequest, MarketCertificate, MarketVerify, MarketFinished, ClientCertificate })
        {
            Assert.NotNull((await CheckAsync(Without(index))).Refusal);
        }
        // The client's own CertificateVerify after its Certificate, or a second Finished.
        Assert.NotNull((await CheckAsync([.. _handshake.Transcript, 15, 0, 0, 4, 4, 3, 0, 0])).Refusal);
        Assert.NotNull((await CheckAsync([.. _handshake.Transcript, .. messages[MarketFinished]])).Refusal);
        Assert.NotNull((await CheckAsync(_handshake.Transcript[..^1])).Refusal);
        Assert.NotNull((await CheckAsync([])).Refusal);
        Assert.NotNull((await CheckAsync("please sign this"u8.ToArray())).Refusal);
        // Content handed over instead of a handshake.
        Assert.NotNull((await CheckAsync(_handshake.Content)).Refusal);
        // A Finished of the wrong length.
        Assert.Contains("Finished", await RefusedAsync(CheckAsync(With(MarketFinished, m => [20, 0, 0, 31, .. m[4..^1]]))), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_ASchemeTheMarketDidNotAskFor()
    {
        Assert.Contains("did not ask", await RefusedAsync(CheckAsync(_handshake.Transcript, scheme: SignatureScheme.Ed25519)), StringComparison.Ordinal);
        Assert.Contains("did not ask", await RefusedAsync(CheckAsync(_handshake.Transcript, scheme: SignatureScheme.RsaPkcs1Sha256)), StringComparison.Ordinal);
    }

    private static byte[] ReplaceAscii(byte[] message, string from, string to)
    {
        var at = message.AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes(from));
        Assert.True(at >= 0);
        System.Text.Encoding.ASCII.GetBytes(to).CopyTo(message, at);
        return message;
    }

    private sealed class RecordingValidator : IServerCertificateValidator
    {
        public string? Name { get; private set; }

        public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
        {
            Name = serverName;
            return ValueTask.FromResult(CertificateVerdict.Ok);
        }
    }

    /// <summary>Signs with the user's key, keeping what the engine handed it: the content and the handshake it is for.</summary>
    private sealed class CapturingSigner(ITlsSigner inner) : ITranscriptSigner
    {
        public byte[]? Content { get; private set; }

        public byte[]? Transcript { get; private set; }

        public IReadOnlyList<SignatureScheme> SupportedSchemes => inner.SupportedSchemes;

        public ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("a TLS 1.3 handshake must hand the signer its transcript");

        public ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, ReadOnlyMemory<byte> transcript, CancellationToken cancellationToken)
        {
            Content = content.ToArray();
            Transcript = transcript.ToArray();
            return inner.SignAsync(scheme, content, cancellationToken);
        }
    }
}
