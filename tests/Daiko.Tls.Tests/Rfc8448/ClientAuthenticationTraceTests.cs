using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Tls;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>RFC 8448 §6: a handshake with client authentication, replayed byte-exactly.</summary>
public sealed class ClientAuthenticationTraceTests
{
    private static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("6.  Client Authentication");

    /// <summary>
    /// Replays the recorded RSA-PSS signature (PSS is randomized, so it cannot be recomputed), after
    /// checking it verifies over exactly the content the engine asked to sign.
    /// </summary>
    private sealed class RecordedSigner(byte[] signature, X509Certificate2 certificate) : ITlsSigner
    {
        public int Calls { get; private set; }

        public IReadOnlyList<SignatureScheme> SupportedSchemes => [SignatureScheme.RsaPssRsaeSha256];

        public ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
        {
            Calls++;
            Assert.Equal(SignatureScheme.RsaPssRsaeSha256, scheme);
            using var rsa = certificate.GetRSAPublicKey()!;
            Assert.True(rsa.VerifyData(content.Span, signature, HashAlgorithmName.SHA256, RSASignaturePadding.Pss),
                "the recorded signature does not cover the content the engine asked to sign");
            return ValueTask.FromResult(signature);
        }
    }

    [Fact]
    public async Task Replay_ClientCertificateVerifyAndFinished_MatchTheTrace()
    {
        var clientHello = Trace.Get("{client}  construct a ClientHello", "ClientHello");
        var (random, suites, extensions) = ClientHelloParts.Split(clientHello);
        var serverRecords = Trace.All("{server}  send handshake record", "complete record")
            .Concat(Trace.All("{server}  send alert record", "complete record"))
            .SelectMany(b => b).ToArray();
        var certificateMessage = Trace.Get("{client}  construct a Certificate handshake message", "Certificate");
        // Certificate: type(1) len(3) context(1: empty) list length(3), cert length(3), cert...
        var certLength = (certificateMessage[8] << 16) | (certificateMessage[9] << 8) | certificateMessage[10];
        var certificateDer = certificateMessage[11..(11 + certLength)];
        using var certificate = X509CertificateLoader.LoadCertificate(certificateDer);
        var verify = Trace.Get("{client}  construct a CertificateVerify", "CertificateVerify");
        var signer = new RecordedSigner(verify[8..], certificate);
        var transport = new ScriptedTransport(serverRecords);
        var secrets = new Dictionary<string, byte[]>();
        var options = new TlsClientOptions
        {
            ServerName = "server",
            CipherSuites = suites,
            CertificateValidator = new AcceptTraceCertificate(),
            ClientCredential = new ClientCredential([certificateDer], signer),
            RandomSource = span => random.CopyTo(span),
            FixedKeyShares = new Dictionary<NamedGroup, byte[]> { [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key") },
            ClientHelloExtensionsOverride = _ => extensions,
            KeyLog = (label, secret) => secrets[label] = secret.ToArray(),
            Time = new FixedTime(),
        };

        await using var connection = await TlsClient.ConnectAsync(transport, options, CancellationToken.None);
        await connection.CloseAsync(CancellationToken.None);

        Assert.Equal(1, signer.Calls);
        Assert.Equal(Convert.ToHexString(Trace.Get("{client}  derive secret \"tls13 res master\"", "expanded")), Convert.ToHexString(secrets["res master"]));
        var expectedClientBytes = Trace.All("{client}  send handshake record", "complete record")
            .Concat(Trace.All("{client}  send alert record", "complete record"))
            .SelectMany(b => b).ToArray();
        Assert.Equal(Convert.ToHexString(expectedClientBytes), Convert.ToHexString(transport.Written));
    }
}
