using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Tls;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>
/// RFC 8448 §6: a handshake with client authentication. The trace does not give the client's RSA
/// private key, and the engine's ClientHello differs from the RFC client's (see §3), so: the trace's
/// client CertificateVerify is checked to verify over the content the engine computes from the trace's
/// transcript, the Finished messages and secrets are derived on that transcript, and a handshake
/// against the trace's server (which asks with the trace's CertificateRequest, and shows §3's server
/// certificate, the one whose key RFC 8448 §2 gives) is run with a test key.
/// </summary>
public sealed class ClientAuthenticationTraceTests
{
    private static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("6.  Client Authentication");

    [Fact]
    public void KeySchedule_OnTheTraceTranscript_VerifiesTheTraceClientSignatureAndDerivesBothFinished()
    {
        var suite = CipherSuiteInfo.Aes128Gcm;
        var messages = new List<byte[]>
        {
            Trace.Get("{client}  construct a ClientHello", "ClientHello"),
            Trace.Get("{server}  construct a ServerHello", "ServerHello"),
        };
        using var share = KeyShare.Create(NamedGroup.X25519, Trace.Get("{client}  create an ephemeral x25519", "private key"));
        using var handshake = new EarlySecret(suite, ReadOnlySpan<byte>.Empty).Next(share.Agree(Trace.Get("{server}  create an ephemeral x25519", "public key")));
        Expect("{server}  extract secret \"handshake\"", "secret", handshake.Value.ToArray());
        var helloHash = SimpleHandshakeTraceTests.Hash(suite, messages);
        var clientHandshake = handshake.ClientTrafficSecret(helloHash);
        var serverHandshake = handshake.ServerTrafficSecret(helloHash);
        Expect("{server}  derive secret \"tls13 c hs traffic\"", "expanded", clientHandshake);
        Expect("{server}  derive secret \"tls13 s hs traffic\"", "expanded", serverHandshake);

        var serverFinished = Trace.Get("{server}  construct a Finished", "Finished");
        var flight = Trace.Get("{server}  send handshake record", "payload", 1);
        messages.Add(flight[..^serverFinished.Length]);
        Expect("{server}  calculate finished", "finished", Hkdf13.FinishedMac(suite, serverHandshake, SimpleHandshakeTraceTests.Hash(suite, messages)));
        messages.Add(serverFinished);
        using var master = handshake.Next();
        var finishedHash = SimpleHandshakeTraceTests.Hash(suite, messages);
        Expect("{server}  derive secret \"tls13 c ap traffic\"", "expanded", master.ClientApplicationTrafficSecret(finishedHash));
        Expect("{server}  derive secret \"tls13 s ap traffic\"", "expanded", master.ServerApplicationTrafficSecret(finishedHash));

        var certificateMessage = Trace.Get("{client}  construct a Certificate", "Certificate");
        var certLength = (certificateMessage[8] << 16) | (certificateMessage[9] << 8) | certificateMessage[10];
        using var certificate = X509CertificateLoader.LoadCertificate(certificateMessage[11..(11 + certLength)]);
        messages.Add(certificateMessage);
        var content = SignatureVerifier.Content(server: false, SimpleHandshakeTraceTests.Hash(suite, messages));
        var verify = Trace.Get("{client}  construct a CertificateVerify", "CertificateVerify");
        Assert.Equal("0804", Convert.ToHexString(verify.AsSpan(4, 2)));
        Assert.True(SignatureVerifier.Verify(certificate, SignatureScheme.RsaPssRsaeSha256, content, verify[8..]),
            "the trace's client signature does not verify over the content the engine computes");
        messages.Add(verify);
        Expect("{client}  calculate finished", "finished", Hkdf13.FinishedMac(suite, clientHandshake, SimpleHandshakeTraceTests.Hash(suite, messages)));
        messages.Add(Trace.Get("{client}  construct a Finished", "Finished"));
        Expect("{client}  derive secret \"tls13 res master\"", "expanded", master.ResumptionMasterSecret(SimpleHandshakeTraceTests.Hash(suite, messages)));
    }

    [Fact]
    public async Task Handshake_AgainstTheTraceServerAskingForACertificate_SendsAChainAndASignatureTheServerVerifies()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var certificate = new CertificateRequest("CN=client", key, HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using var signer = new SoftwareSigner(ECDsa.Create(key.ExportParameters(true)));
        // §6's server certificate is not for the §2 RSA key, whose private half the trace gives: send §3's.
        var server = new TraceServer(Trace, requestClientCertificate: true, certificateFrom: SimpleHandshakeTraceTests.Trace);
        var options = new TlsClientOptions
        {
            ServerName = "server",
            CipherSuites = [CipherSuite.Aes128GcmSha256],
            CertificateValidator = new AcceptTraceCertificate(),
            ClientCredential = new ClientCredential([certificate.RawData], signer),
            RandomSource = span => Trace.Get("{client}  construct a ClientHello", "ClientHello").AsSpan(6, 32).CopyTo(span),
            FixedKeyShares = new Dictionary<NamedGroup, byte[]> { [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key") },
            Time = new FixedTime(),
        };
        await using (var connection = await TlsClient.ConnectAsync(server, options, CancellationToken.None))
        {
            await connection.WriteAsync(new byte[] { 1, 2, 3 });
        }

        server.ClientRecords();
        var sent = server.ClientHandshakeMessages;
        Assert.Equal(new byte[] { 11, 15, 20 }, sent.Select(m => m[0]));
        // Certificate: the request's (empty) context, then our one certificate.
        Assert.Equal(0, sent[0][4]);
        Assert.Equal(Convert.ToHexString(certificate.RawData), Convert.ToHexString(sent[0][11..(11 + certificate.RawData.Length)]));
        var transcript = new List<byte> (server.TranscriptThroughServerFinished);
        transcript.AddRange(sent[0]);
        Assert.Equal("0403", Convert.ToHexString(sent[1].AsSpan(4, 2)));
        var signature = sent[1][8..];
        Assert.True(key.VerifyData(TestKeySchedule.SignedContent(server: false, TestKeySchedule.Hash(transcript.ToArray())), signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence),
            "the client's CertificateVerify does not verify over the transcript");
        transcript.AddRange(sent[1]);
        Assert.Equal(Convert.ToHexString(TestKeySchedule.FinishedMessage(server.Secrets["c hs traffic"], TestKeySchedule.Hash(transcript.ToArray()))), Convert.ToHexString(sent[2]));
    }

    private static void Expect(string step, string label, byte[] actual) =>
        Assert.True(Convert.ToHexString(Trace.Get(step, label)) == Convert.ToHexString(actual),
            $"{step} / {label}: expected {Convert.ToHexString(Trace.Get(step, label))}, engine gave {Convert.ToHexString(actual)}");
}
