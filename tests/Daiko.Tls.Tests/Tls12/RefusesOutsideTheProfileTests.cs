using System.Security.Cryptography;
using Daiko.TestSupport;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Records;
using Daiko.Tls.Tls12;

namespace Daiko.Tls.Tests.Tls12;

/// <summary>
/// Every check of the TLS 1.2 profile, each against a real OpenSSL server that is outside the
/// profile or behind an active attacker (<see cref="RecordTamperingProxy"/>). Where the client's
/// alert reaches the server, s_server -msg shows it, and the test reads it there.
/// </summary>
public sealed class RefusesOutsideTheProfileTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-tls12-refuse");
    private readonly TestPki _pki;

    public RefusesOutsideTheProfileTests()
    {
        _pki = TestPki.Create(_dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    private TlsClientOptions Options(TlsVersions versions = TlsVersions.Both) => new()
    {
        ServerName = "localhost",
        Versions = versions,
        ClientCredential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath),
        CertificateValidator = new X509ChainValidator([_pki.Root]),
        HandshakeTimeout = TimeSpan.FromSeconds(10),
    };

    private Task<OpenSslServer> StartAsync(string versions, params string[] extra) => OpenSslServer.StartAsync(_pki, new TlsPeerOptions
    {
        Versions = versions,
        ExtraArguments = ["-msg", .. extra],
    });

    private static async Task<TlsConnection> ConnectAsync(int port, TlsClientOptions options) =>
        await TlsClient.ConnectAsync("127.0.0.1", port, options, CancellationToken.None);

    [Fact]
    public async Task Refuses_AServerWithoutExtendedMasterSecret_WithHandshakeFailure()
    {
        var config = Path.Combine(_dir.Path, "no-ems.cnf");
        File.WriteAllText(config, "openssl_conf = c\n[c]\nssl_conf = s\n[s]\nsystem_default = d\n[d]\nOptions = -ExtendedMasterSecret\n");
        using var peer = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions
        {
            Versions = "1.2",
            ExtraArguments = ["-msg"],
            Environment = new Dictionary<string, string> { ["OPENSSL_CONF"] = config },
        });

        var e = await Assert.ThrowsAsync<TlsException>(() => ConnectAsync(peer.Port, Options()));

        Assert.Equal(AlertDescription.HandshakeFailure, e.Alert);
        Assert.False(e.SentByPeer);
        Assert.Contains("Extended Master Secret", e.Message, StringComparison.Ordinal);
        await peer.WaitForOutputAsync("fatal handshake_failure", TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Refuses_ATls12Answer_ToAClientHelloThatSentEarlyData_BeforeAnyKeyIsUsed()
    {
        using var peer = await StartAsync("1.2");
        var counters = new TlsCounters();
        // A TLS 1.3 ticket for this name that allows early data (as one from the market before it was downgraded).
        var ticket = new SessionTicket(RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32), CipherSuite.Aes128GcmSha256,
            "localhost", null, 3600, 7, 16384, DateTimeOffset.UtcNow, [0]);
        var options = Options() with
        {
            ResumptionTicket = ticket,
            EarlyData = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"u8.ToArray(),
            ClientCredential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath, counters),
        };

        var e = await Assert.ThrowsAsync<TlsException>(() => ConnectAsync(peer.Port, options));

        Assert.Contains("early data", e.Message, StringComparison.Ordinal);
        Assert.False(e.SentByPeer, e.Message);
        // RFC 8446 §4.2.10: refused at the ServerHello, so the user's key signed nothing and no key exchange ran.
        Assert.Equal(0, counters.PublicKeyOperations);
    }

    [Theory]
    [InlineData("ECDHE-ECDSA-AES128-SHA256", TestKeyKind.EcP256)]
    [InlineData("AES128-GCM-SHA256", TestKeyKind.Rsa2048)]
    public async Task Refuses_ACbcOnlyOrStaticRsaOnlyServer_NamingTheProfile(string serverCiphers, TestKeyKind serverKey)
    {
        _pki.WithServer(_pki.IssueServer($"server-{serverKey}", "localhost", serverKey));
        using var peer = await StartAsync("1.2", "-cipher", serverCiphers);

        var e = await Assert.ThrowsAsync<TlsException>(() => ConnectAsync(peer.Port, Options()));

        Assert.True(e.SentByPeer, e.Message);
        Assert.Equal(AlertDescription.HandshakeFailure, e.Alert);
        Assert.Contains("no CBC suites, no RSA key transport", e.Message, StringComparison.Ordinal);
        Assert.Contains("ECDHE", e.Message, StringComparison.Ordinal);
    }

    /// <summary>An attacker renames supported_versions so a server that speaks TLS 1.3 answers TLS 1.2.</summary>
    private static byte[] StripTls13(RecordDirection direction, byte type, byte[] content)
    {
        if (direction != RecordDirection.ClientToServer || type != 22 || content[0] != 1) return content;
        byte[] supportedVersions = [0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03];
        var at = content.AsSpan().IndexOf(supportedVersions);
        Assert.True(at > 0, "the ClientHello offers TLS 1.3 and 1.2");
        content[at] = 0xfa;
        content[at + 1] = 0xfa;
        return content;
    }

    [Fact]
    public async Task Refuses_TheDowngradeSentinel_WhenTls13WasStrippedOnTheWay()
    {
        using var peer = await StartAsync("both");
        using var attacker = RecordTamperingProxy.Start(peer.Port, StripTls13);

        var e = await Assert.ThrowsAsync<TlsException>(() => ConnectAsync(attacker.Port, Options()));

        Assert.Equal(AlertDescription.IllegalParameter, e.Alert);
        Assert.Contains("downgrade sentinel", e.Message, StringComparison.Ordinal);
        await peer.WaitForOutputAsync("fatal illegal_parameter", TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Accepts_TheTls12Sentinel_WhenTheClientOfferedOnlyTls12()
    {
        using var peer = await StartAsync("both");

        await using var connection = await ConnectAsync(peer.Port, Options(TlsVersions.Tls12));

        Assert.Equal(TlsVersions.Tls12, connection.Version);
    }

    /// <summary>An attacker removes renegotiation_info from the ServerHello (fixing every length on the way).</summary>
    private static byte[] StripRenegotiationInfo(RecordDirection direction, byte type, byte[] content)
    {
        if (direction != RecordDirection.ServerToClient || type != 22 || content[0] != 2) return content;
        byte[] extension = [0xff, 0x01, 0x00, 0x01, 0x00];
        var at = content.AsSpan().IndexOf(extension);
        Assert.True(at > 0, "the server sent renegotiation_info");
        var stripped = content[..at].Concat(content[(at + extension.Length)..]).ToArray();
        var helloLength = ((stripped[1] << 16) | (stripped[2] << 8) | stripped[3]) - extension.Length;
        stripped[2] = (byte)(helloLength >> 8);
        stripped[3] = (byte)helloLength;
        var extensionsAt = 4 + 2 + 32 + 1 + stripped[38] + 2 + 1;
        var extensionsLength = ((stripped[extensionsAt] << 8) | stripped[extensionsAt + 1]) - extension.Length;
        stripped[extensionsAt] = (byte)(extensionsLength >> 8);
        stripped[extensionsAt + 1] = (byte)extensionsLength;
        return stripped;
    }

    [Fact]
    public async Task Refuses_AServerWithoutSecureRenegotiation_WithHandshakeFailure()
    {
        using var peer = await StartAsync("1.2");
        using var attacker = RecordTamperingProxy.Start(peer.Port, StripRenegotiationInfo);

        var e = await Assert.ThrowsAsync<TlsException>(() => ConnectAsync(attacker.Port, Options()));

        Assert.Equal(AlertDescription.HandshakeFailure, e.Alert);
        Assert.Contains("secure renegotiation (RFC 5746)", e.Message, StringComparison.Ordinal);
        await peer.WaitForOutputAsync("fatal handshake_failure", TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Refuses_Renegotiation_WithNoRenegotiation()
    {
        using var peer = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { Versions = "1.2", Www = false, ExtraArguments = ["-msg"] });
        await using var connection = await ConnectAsync(peer.Port, Options());
        await connection.WriteAsync("hello\n"u8.ToArray());
        await peer.WaitForOutputAsync("hello", TimeSpan.FromSeconds(5));

        await peer.SendCommandAsync("r");
        var e = await Assert.ThrowsAsync<TlsException>(async () => _ = await connection.ReadAsync(new byte[100]));

        Assert.Equal(AlertDescription.NoRenegotiation, e.Alert);
        await peer.WaitForOutputAsync("warning no_renegotiation", TimeSpan.FromSeconds(5));
        await Assert.ThrowsAsync<TlsException>(async () => await connection.WriteAsync(new byte[1]));
    }

    [Fact]
    public async Task Refuses_ABadServerKeyExchangeSignature_WithDecryptError()
    {
        using var peer = await StartAsync("1.2");
        using var attacker = RecordTamperingProxy.Start(peer.Port, (direction, type, content) =>
        {
            if (direction != RecordDirection.ServerToClient || type != 22) return content;
            foreach (var m in RecordTamperingProxy.HandshakeMessages(content).Where(m => m.Type == 12))
            {
                content[m.Offset + m.Length - 1] ^= 0x01;
            }
            return content;
        });

        var e = await Assert.ThrowsAsync<TlsException>(() => ConnectAsync(attacker.Port, Options()));

        Assert.Equal(TlsError.VerificationFailed, e.Error);
        Assert.Equal(AlertDescription.DecryptError, e.Alert);
        Assert.Contains("ServerKeyExchange", e.Message, StringComparison.Ordinal);
        await peer.WaitForOutputAsync("fatal decrypt_error", TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Refuses_ABadServerFinished_WithDecryptError()
    {
        var keyLog = Path.Combine(_dir.Path, "keys.log");
        using var peer = await StartAsync("1.2", "-keylogfile", keyLog);
        var forger = new FinishedForger(keyLog);
        using var attacker = RecordTamperingProxy.Start(peer.Port, forger.Tamper);

        var e = await Assert.ThrowsAsync<TlsException>(() => ConnectAsync(attacker.Port, Options()));

        Assert.True(forger.Forged, "the attacker re-sealed the server's Finished");
        Assert.Equal(TlsError.VerificationFailed, e.Error);
        Assert.Equal(AlertDescription.DecryptError, e.Alert);
        Assert.Contains("Finished", e.Message, StringComparison.Ordinal);
        await peer.WaitForOutputAsync("fatal decrypt_error", TimeSpan.FromSeconds(5));
    }

    /// <summary>
    /// Knows the server's keys (from its key log) and flips one bit of its Finished verify_data,
    /// re-sealing the record so that only the Finished check can catch it.
    /// </summary>
    private sealed class FinishedForger(string keyLog)
    {
        private byte[]? _clientRandom;
        private byte[]? _serverRandom;
        private CipherSuiteInfo? _suite;
        private bool _serverChangedKeys;

        public bool Forged { get; private set; }

        public byte[] Tamper(RecordDirection direction, byte type, byte[] content)
        {
            if (type == 22 && content[0] == 1 && direction == RecordDirection.ClientToServer) _clientRandom ??= content[6..38];
            if (type == 22 && content[0] == 2 && direction == RecordDirection.ServerToClient && _serverRandom is null)
            {
                _serverRandom = content[6..38];
                var suite = (CipherSuite)((content[39 + content[38]] << 8) | content[40 + content[38]]);
                _suite = CipherSuiteInfo.FindTls12(suite);
            }
            if (direction == RecordDirection.ServerToClient && type == 20) _serverChangedKeys = true;
            if (direction != RecordDirection.ServerToClient || type != 22 || !_serverChangedKeys || Forged) return content;

            var line = File.ReadAllLines(keyLog).Single(l => l.StartsWith("CLIENT_RANDOM " + Convert.ToHexString(_clientRandom!), StringComparison.OrdinalIgnoreCase));
            using var master = MasterSecret12.Resumed(_suite!, Convert.FromHexString(line.Split(' ')[2]));
            using var keys = master.KeyBlock(_clientRandom, _serverRandom);
            using var reader = keys.ServerReader(_suite!);
            byte[] header = [22, 3, 3, (byte)(content.Length >> 8), (byte)content.Length];
            var (_, length) = reader.Open(header, content);
            var finished = content[..length];
            Assert.Equal(20, finished[0]);
            finished[4] ^= 0x01;
            using var writer = keys.ServerReader(_suite!);
            var output = new byte[length + 64];
            var sealedLength = writer.Seal(ContentType.Handshake, finished, 0, output);
            Forged = true;
            return output[5..sealedLength];
        }
    }
}
