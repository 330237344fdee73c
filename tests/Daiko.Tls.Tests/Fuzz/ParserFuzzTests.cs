using Daiko.TestSupport;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;
using Daiko.Tls.Tests.Rfc8448;

namespace Daiko.Tls.Tests.Fuzz;

/// <summary>
/// Bounded fuzzing of the record layer and the handshake parsers, seeded with the RFC 8448 messages.
/// Every input must be accepted or refused with a TlsException: never another exception, never a hang.
/// </summary>
public sealed class ParserFuzzTests
{
    private static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("3.  Simple 1-RTT Handshake");

    private static bool IsCleanRejection(Exception e) => e is TlsException;

    [Fact]
    public void HandshakeMessageParsers_RejectMalformedInputCleanly()
    {
        var seeds = new List<byte[]>
        {
            Trace.Get("{server}  construct a ServerHello", "ServerHello")[4..],
            Trace.Get("{server}  construct a EncryptedExtensions", "EncryptedExtensions")[4..],
            Trace.Get("{server}  construct a Certificate", "Certificate")[4..],
            Trace.Get("{server}  construct a CertificateVerify", "CertificateVerify")[4..],
            Trace.Get("{server}  construct a NewSessionTicket", "NewSessionTicket")[4..],
            Rfc8448Trace.Section("6.  Client Authentication").Get("{server}  construct a CertificateRequest", "CertificateRequest")[4..],
        };
        var report = MutationFuzzer.Run(seeds, input =>
        {
            // Each parser sees every input: most are refused, some happen to parse.
            Try(() => ServerHello.Parse(input));
            Try(() => EncryptedExtensions.Parse(input));
            Try(() => CertificateMessage.Parse(input));
            Try(() => CertificateVerify.Parse(input));
            Try(() => NewSessionTicket.Parse(input));
            Try(() => Messages.CertificateRequest.Parse(input));
        }, IsCleanRejection, iterations: 20_000, timeBudget: TimeSpan.FromSeconds(15));
        Assert.True(report.Iterations > 1000, $"only {report.Iterations} inputs ran");

        static void Try(Action parse)
        {
            try { parse(); }
            catch (TlsException) { }
        }
    }

    [Fact]
    public async Task Handshake_OnMutatedServerFlights_FailsCleanlyAndNeverHangs()
    {
        var clientHello = Trace.Get("{client}  construct a ClientHello", "ClientHello");
        var (random, suites, extensions) = ClientHelloParts.Split(clientHello);
        var serverHello = Trace.Get("{server}  send handshake record", "complete record", 0);
        var flight = Trace.Get("{server}  send handshake record", "payload", 1);
        var secret = Trace.Get("{server}  derive secret \"tls13 s hs traffic\"", "expanded");
        var inputs = new List<byte[]>();
        MutationFuzzer.Run([flight, serverHello], input => inputs.Add(input), _ => false, iterations: 400, timeBudget: TimeSpan.FromSeconds(5), randomSeed: 1);
        var failures = 0;
        var ran = 0;
        var deadline = DateTime.UtcNow.AddSeconds(25);
        foreach (var input in inputs)
        {
            if (DateTime.UtcNow > deadline) break;
            byte[] server;
            if (input.Length > 0 && input[0] == 0x16)
            {
                server = input; // a mutated plaintext ServerHello record
            }
            else
            {
                using var protection = new RecordProtection(CipherSuiteInfo.Aes128Gcm, secret.ToArray());
                var sealedRecord = new byte[Math.Min(input.Length, RecordProtection.MaxPlaintext - 1) + 64];
                var n = protection.Seal(ContentType.Handshake, input.AsSpan(0, Math.Min(input.Length, RecordProtection.MaxPlaintext - 1)), 0, sealedRecord);
                server = serverHello.Concat(sealedRecord[..n]).ToArray();
            }
            var options = new TlsClientOptions
            {
                ServerName = "server",
                CipherSuites = suites,
                CertificateValidator = new AcceptTraceCertificate(),
                RandomSource = span => random.CopyTo(span),
                FixedKeyShares = new Dictionary<NamedGroup, byte[]> { [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key") },
                ClientHelloExtensionsOverride = _ => extensions,
                HandshakeTimeout = TimeSpan.FromSeconds(2),
                Time = new FixedTime(),
            };
            ran++;
            try
            {
                await using var connection = await TlsClient.ConnectAsync(new ScriptedTransport(server), options, CancellationToken.None);
            }
            catch (TlsException)
            {
                failures++;
            }
        }
        Assert.True(ran > 100, $"only {ran} handshakes ran");
        Assert.True(failures > ran / 2, "most mutated flights must be refused");
    }
}
