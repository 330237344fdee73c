using Daiko.Tls;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>RFC 8448 §3: the simple 1-RTT handshake replayed byte-exactly.</summary>
public sealed class SimpleHandshakeTraceTests
{
    private static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("3.  Simple 1-RTT Handshake");

    [Fact]
    public async Task Replay_EveryClientByteAndSecret_MatchesTheTrace()
    {
        var clientHello = Trace.Get("{client}  construct a ClientHello", "ClientHello");
        var (random, suites, extensions) = ClientHelloParts.Split(clientHello);
        var serverRecords = Trace.All("{server}  send handshake record", "complete record")
            .Concat(Trace.All("{server}  send application_data record", "complete record"))
            .Concat(Trace.All("{server}  send alert record", "complete record"))
            .SelectMany(b => b).ToArray();
        var transport = new ScriptedTransport(serverRecords);
        var secrets = new Dictionary<string, byte[]>();
        var options = new TlsClientOptions
        {
            ServerName = "server",
            CipherSuites = suites,
            Groups = [NamedGroup.X25519, NamedGroup.Secp256r1, NamedGroup.Secp384r1],
            CertificateValidator = new AcceptTraceCertificate(),
            RandomSource = span => random.CopyTo(span),
            FixedKeyShares = new Dictionary<NamedGroup, byte[]> { [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key") },
            ClientHelloExtensionsOverride = _ => extensions,
            KeyLog = (label, secret) => secrets[label] = secret.ToArray(),
            Time = new FixedTime(),
        };

        await using var connection = await TlsClient.ConnectAsync(transport, options, CancellationToken.None);
        await connection.WriteAsync(Trace.Get("{client}  send application_data record", "payload"));
        var reply = new byte[50];
        await connection.ReadExactlyAsync(reply);
        await connection.CloseAsync(CancellationToken.None);

        Assert.Equal(Convert.ToHexString(Trace.Get("{server}  send application_data record", "payload")), Convert.ToHexString(reply));
        Assert.Equal(Hex(Trace.Get("{server}  derive secret \"tls13 c hs traffic\"", "expanded")), Hex(secrets["c hs traffic"]));
        Assert.Equal(Hex(Trace.Get("{server}  derive secret \"tls13 s hs traffic\"", "expanded")), Hex(secrets["s hs traffic"]));
        Assert.Equal(Hex(Trace.Get("{server}  derive secret \"tls13 c ap traffic\"", "expanded")), Hex(secrets["c ap traffic"]));
        Assert.Equal(Hex(Trace.Get("{server}  derive secret \"tls13 s ap traffic\"", "expanded")), Hex(secrets["s ap traffic"]));
        Assert.Equal(Hex(Trace.Get("{server}  derive secret \"tls13 exp master\"", "expanded")), Hex(secrets["exp master"]));
        Assert.Equal(Hex(Trace.Get("{client}  derive secret \"tls13 res master\"", "expanded")), Hex(secrets["res master"]));

        var ticket = Assert.Single(connection.Tickets);
        Assert.Equal(Hex(Trace.Get("{server}  generate resumption secret", "expanded")), Hex(ticket.Psk));
        Assert.Equal(0x400u, ticket.MaxEarlyData);

        var expectedClientBytes = new[]
        {
            Trace.Get("{client}  send handshake record", "complete record", 0),
            Trace.Get("{client}  send handshake record", "complete record", 1),
            Trace.Get("{client}  send application_data record", "complete record"),
            Trace.Get("{client}  send alert record", "complete record"),
        }.SelectMany(b => b).ToArray();
        Assert.Equal(Hex(expectedClientBytes), Hex(transport.Written));
    }

    private static string Hex(byte[] b) => Convert.ToHexString(b);
}

/// <summary>A clock fixed at the trace's time, so ticket ages are deterministic.</summary>
internal sealed class FixedTime : TimeProvider
{
    public DateTimeOffset Now { get; set; } = new(2018, 9, 1, 0, 0, 0, TimeSpan.Zero);

    public override DateTimeOffset GetUtcNow() => Now;
}
