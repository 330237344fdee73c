using Daiko.Tls;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>
/// RFC 8448 §3, the simple 1-RTT handshake. The engine writes its own ClientHello; only the client
/// random and the x25519 private key come from the trace. The RFC's client made choices the engine
/// does not (it also sends renegotiation_info and session_ticket, offers P-521 and
/// the FFDHE groups and legacy signature schemes, in another extension order), so the engine's
/// ClientHello and everything hashed after it differ from the trace's bytes. The derivations are
/// therefore compared on the trace's own transcript, and the handshake is run against a server that
/// answers the engine's ClientHello with the trace's server messages and keys.
/// </summary>
public sealed class SimpleHandshakeTraceTests
{
    internal static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("3.  Simple 1-RTT Handshake");

    internal static TlsClientOptions EngineOptions(Action<string, byte[]>? keyLog = null) => new()
    {
        ServerName = "server",
        // The RFC's client offered these suites in this order; an ordinary option of the engine.
        CipherSuites = [CipherSuite.Aes128GcmSha256, CipherSuite.ChaCha20Poly1305Sha256, CipherSuite.Aes256GcmSha384],
        CertificateValidator = new AcceptTraceCertificate(),
        RandomSource = span => Trace.Get("{client}  construct a ClientHello", "ClientHello").AsSpan(6, 32).CopyTo(span),
        FixedKeyShares = new Dictionary<NamedGroup, byte[]> { [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key") },
        KeyLog = keyLog,
        Time = new FixedTime(),
    };

    [Fact]
    public async Task EngineClientHello_CarriesTheTraceRandomAndKeyShare_AndOffersOnlyTls13()
    {
        var server = new TraceServer(Trace);
        await using (await TlsClient.ConnectAsync(server, EngineOptions(), CancellationToken.None)) { }
        var engine = ClientHelloParts.Split(server.ClientHello);
        var rfc = ClientHelloParts.Split(Trace.Get("{client}  construct a ClientHello", "ClientHello"));

        Assert.Equal(Hex(rfc.Random), Hex(engine.Random));
        Assert.Equal(rfc.Suites, engine.Suites);
        Assert.Equal(Hex(Trace.Get("{client}  create an ephemeral x25519", "public key")), Hex(TraceServer.ClientKeyShare(server.ClientHello)));
        Assert.Equal("020304", Hex(Extension(engine, 43)));                       // supported_versions: TLS 1.3 only
        Assert.Equal(Hex(Extension(rfc, 0)), Hex(Extension(engine, 0)));          // server_name "server"
        Assert.Equal(Hex(Extension(rfc, 45)), Hex(Extension(engine, 45)));        // psk_dhe_ke
        Assert.Equal("0006001D00170018", Hex(Extension(engine, 10)));             // x25519, P-256, P-384 (the RFC adds P-521, FFDHE)
        Assert.Equal(Hex(Extension(rfc, 28)), Hex(Extension(engine, 28)));        // record_size_limit 2^14 + 1
        // The RFC's client also sent renegotiation_info and session_ticket; the engine does not.
        Assert.Equal(new ushort[] { 0, 10, 13, 28, 43, 45, 51 }, engine.Extensions.Select(e => e.Item1).Order());
        Assert.Equal(
            rfc.Extensions.Select(e => e.Item1).Except(new ushort[] { 0xff01, 0x23 }).Order(),
            engine.Extensions.Select(e => e.Item1).Order());
    }

    [Fact]
    public void KeySchedule_OnTheTraceTranscript_DerivesEverySecretKeyIvAndFinishedOfTheTrace()
    {
        var suite = CipherSuiteInfo.Aes128Gcm;
        var clientHello = Trace.Get("{client}  construct a ClientHello", "ClientHello");
        var serverHello = Trace.Get("{server}  construct a ServerHello", "ServerHello");
        var flight = Trace.Get("{server}  send handshake record", "payload", 1);
        var serverFinished = Trace.Get("{server}  construct a Finished", "Finished");
        var clientFinished = Trace.Get("{client}  construct a Finished", "Finished");
        var transcript = new System.Collections.Generic.List<byte[]> { clientHello, serverHello };

        using var share = KeyShare.Create(NamedGroup.X25519, Trace.Get("{client}  create an ephemeral x25519", "private key"));
        Assert.Equal(Hex(Trace.Get("{client}  create an ephemeral x25519", "public key")), Hex(share.PublicKey));
        var shared = share.Agree(Trace.Get("{server}  create an ephemeral x25519", "public key"));
        Expect("{server}  extract secret \"handshake\"", "IKM", shared);

        var early = new EarlySecret(suite, ReadOnlySpan<byte>.Empty);
        Expect("{server}  extract secret \"early\"", "secret", early.Value.ToArray());
        using var handshake = early.Next(shared);
        Expect("{server}  extract secret \"handshake\"", "secret", handshake.Value.ToArray());
        var helloHash = Hash(suite, transcript);
        var clientHandshake = handshake.ClientTrafficSecret(helloHash);
        var serverHandshake = handshake.ServerTrafficSecret(helloHash);
        Expect("{server}  derive secret \"tls13 c hs traffic\"", "expanded", clientHandshake);
        Expect("{server}  derive secret \"tls13 s hs traffic\"", "expanded", serverHandshake);
        var (serverKey, serverIv) = TrafficSecrets.Keys(suite, serverHandshake);
        Expect("{server}  derive write traffic keys for handshake data", "key expanded", serverKey);
        Expect("{server}  derive write traffic keys for handshake data", "iv expanded", serverIv);
        var (clientKey, clientIv) = TrafficSecrets.Keys(suite, clientHandshake);
        Expect("{server}  derive read traffic keys for handshake data", "key expanded", clientKey);
        Expect("{server}  derive read traffic keys for handshake data", "iv expanded", clientIv);

        // The engine's record layer seals the server flight into the trace's record, byte for byte.
        using (var protection = new RecordProtection(suite, serverHandshake.ToArray()))
        {
            var sealedRecord = new byte[flight.Length + 64];
            var length = protection.Seal(ContentType.Handshake, flight, 0, sealedRecord);
            Expect("{server}  send handshake record", "complete record", sealedRecord[..length], 1);
        }

        transcript.Add(flight[..^serverFinished.Length]);
        Expect("{server}  calculate finished", "finished", Hkdf13.FinishedMac(suite, serverHandshake, Hash(suite, transcript)));
        transcript.Add(serverFinished);
        using var master = handshake.Next();
        Expect("{server}  extract secret \"master\"", "secret", master.Value.ToArray());
        var finishedHash = Hash(suite, transcript);
        Expect("{server}  derive secret \"tls13 c ap traffic\"", "expanded", master.ClientApplicationTrafficSecret(finishedHash));
        var serverApplication = master.ServerApplicationTrafficSecret(finishedHash);
        Expect("{server}  derive secret \"tls13 s ap traffic\"", "expanded", serverApplication);
        Expect("{server}  derive secret \"tls13 exp master\"", "expanded", master.ExporterMasterSecret(finishedHash));
        Expect("{server}  derive write traffic keys for application data", "key expanded", TrafficSecrets.Keys(suite, serverApplication).Key);
        Expect("{server}  derive write traffic keys for application data", "iv expanded", TrafficSecrets.Keys(suite, serverApplication).Iv);
        Expect("{client}  calculate finished", "finished", Hkdf13.FinishedMac(suite, clientHandshake, finishedHash));
        Assert.Equal(Hex(clientFinished[4..]), Hex(Hkdf13.FinishedMac(suite, clientHandshake, finishedHash)));

        transcript.Add(clientFinished);
        var resumption = master.ResumptionMasterSecret(Hash(suite, transcript));
        Expect("{client}  derive secret \"tls13 res master\"", "expanded", resumption);
        var ticket = Trace.Get("{server}  construct a NewSessionTicket", "NewSessionTicket");
        Expect("{server}  generate resumption secret", "expanded", TrafficSecrets.TicketPsk(suite, resumption, ticket[13..(13 + ticket[12])]));
    }

    [Fact]
    public async Task Handshake_AgainstTheTraceServer_AgreesOnEverySecretAndCarriesTheTraceData()
    {
        var secrets = new Dictionary<string, byte[]>();
        var server = new TraceServer(Trace);
        await using var connection = await TlsClient.ConnectAsync(server, EngineOptions((label, secret) => secrets[label] = secret.ToArray()), CancellationToken.None);
        await connection.WriteAsync(Trace.Get("{client}  send application_data record", "payload"));
        var reply = new byte[50];
        await connection.ReadExactlyAsync(reply);
        await connection.CloseAsync(CancellationToken.None);

        // The ECDHE output and the handshake secret do not depend on the transcript: they are the trace's.
        Assert.Equal(Hex(Trace.Get("{server}  extract secret \"handshake\"", "IKM")), Hex(server.SharedSecret));
        Assert.Equal(Hex(Trace.Get("{server}  extract secret \"handshake\"", "secret")), Hex(server.Secrets["handshake"]));
        Assert.Equal(Hex(Trace.Get("{server}  extract secret \"master\"", "secret")), Hex(server.Secrets["master"]));
        foreach (var label in new[] { "c hs traffic", "s hs traffic", "c ap traffic", "s ap traffic", "exp master", "res master" })
        {
            Assert.True(secrets.ContainsKey(label), $"the engine derived no {label}");
            Assert.Equal(Hex(server.Secrets[label]), Hex(secrets[label]));
        }
        Assert.Equal(Hex(Trace.Get("{server}  send application_data record", "payload")), Hex(reply));
        var ticket = Assert.Single(connection.Tickets);
        Assert.Equal(Hex(server.Secrets["ticket psk"]), Hex(ticket.Psk));
        Assert.Equal(0x400u, ticket.MaxEarlyData);

        var written = server.ClientRecords();
        Assert.Equal(Hex(server.ExpectedClientFinished), Hex(Assert.Single(server.ClientHandshakeMessages)));
        Assert.Equal((byte)0x17, written[1].Type);
        Assert.Equal(Hex(Trace.Get("{client}  send application_data record", "payload")), Hex(written[1].Content));
        Assert.Equal("0100", Hex(written[2].Content)); // close_notify
        Assert.Equal(3, written.Count);
    }

    internal static byte[] Extension((byte[] Random, CipherSuite[] Suites, List<(ushort, byte[])> Extensions) hello, ushort type) =>
        hello.Extensions.Single(e => e.Item1 == type).Item2;

    internal static byte[] Hash(CipherSuiteInfo suite, IEnumerable<byte[]> messages) => suite.HashData(messages.SelectMany(m => m).ToArray());

    private static void Expect(string step, string label, byte[] actual, int occurrence = 0) =>
        Assert.True(Hex(Trace.Get(step, label, occurrence)) == Hex(actual), $"{step} / {label}: expected {Hex(Trace.Get(step, label, occurrence))}, engine gave {Hex(actual)}");

    private static string Hex(byte[] b) => Convert.ToHexString(b);
}

/// <summary>A clock fixed at the trace's time, so ticket ages are deterministic.</summary>
internal sealed class FixedTime : TimeProvider
{
    public DateTimeOffset Now { get; set; } = new(2018, 9, 1, 0, 0, 0, TimeSpan.Zero);

    public override DateTimeOffset GetUtcNow() => Now;
}
