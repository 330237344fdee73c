using Daiko.Tls;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>RFC 8448 §5: the server asks for a P-256 share with a HelloRetryRequest (and a cookie).</summary>
public sealed class HelloRetryRequestTraceTests
{
    private static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("5.  HelloRetryRequest");

    [Fact]
    public async Task Replay_SecondClientHelloAndFinished_MatchTheTrace()
    {
        var first = ClientHelloParts.Split(Trace.Get("{client}  construct a ClientHello", "ClientHello", 0));
        var second = ClientHelloParts.Split(Trace.Get("{client}  construct a ClientHello", "ClientHello", 1));
        Assert.Equal(Convert.ToHexString(first.Random), Convert.ToHexString(second.Random));
        var serverRecords = Trace.All("{server}  send handshake record", "complete record")
            .Concat(Trace.All("{server}  send application_data record", "complete record"))
            .Concat(Trace.All("{server}  send alert record", "complete record"))
            .SelectMany(b => b).ToArray();
        var transport = new ScriptedTransport(serverRecords);
        var secrets = new Dictionary<string, byte[]>();
        var options = new TlsClientOptions
        {
            ServerName = "server",
            CipherSuites = first.Suites,
            Groups = [NamedGroup.X25519, NamedGroup.Secp256r1, NamedGroup.Secp384r1],
            CertificateValidator = new AcceptTraceCertificate(),
            RandomSource = span => first.Random.CopyTo(span),
            FixedKeyShares = new Dictionary<NamedGroup, byte[]>
            {
                [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key"),
                [NamedGroup.Secp256r1] = Trace.Get("{client}  create an ephemeral P-256", "private key"),
            },
            ClientHelloExtensionsOverride = isSecond => isSecond ? second.Extensions : first.Extensions,
            KeyLog = (label, secret) => secrets[label] = secret.ToArray(),
            Time = new FixedTime(),
        };

        await using var connection = await TlsClient.ConnectAsync(transport, options, CancellationToken.None);
        Assert.Equal(NamedGroup.Secp256r1, connection.Group);
        await connection.CloseAsync(CancellationToken.None);

        Assert.Equal(Convert.ToHexString(Trace.Get("{server}  derive secret \"tls13 c hs traffic\"", "expanded")), Convert.ToHexString(secrets["c hs traffic"]));
        Assert.Equal(Convert.ToHexString(Trace.Get("{server}  derive secret \"tls13 c ap traffic\"", "expanded")), Convert.ToHexString(secrets["c ap traffic"]));
        var expectedClientBytes = Trace.All("{client}  send handshake record", "complete record")
            .Concat(Trace.All("{client}  send alert record", "complete record"))
            .SelectMany(b => b).ToArray();
        Assert.Equal(Convert.ToHexString(expectedClientBytes), Convert.ToHexString(transport.Written));
    }
}
