using Daiko.Tls.Tests.Rfc8448;

namespace Daiko.Tls.Tests.Handshake;

/// <summary>
/// Where a session ticket may be used (docs/security.md, ticket misuse): it is offered only for the
/// server name and suite hash it was issued under, and early data goes only under its ALPN and suite.
/// Read from the ClientHello the engine writes.
/// </summary>
public sealed class TicketScopeTests
{
    private static SessionTicket Ticket(string serverName = "server", string? alpn = null, CipherSuite suite = CipherSuite.Aes128GcmSha256) =>
        new(new byte[] { 1, 2, 3, 4 }, new byte[32], suite, serverName, alpn, 3600, 0x01020304, 0x4000, new FixedTime().Now, [0]);

    private static async Task<List<(ushort Type, byte[] Data)>> ClientHelloExtensionsAsync(SessionTicket ticket, string serverName = "server",
        IReadOnlyList<CipherSuite>? suites = null, IReadOnlyList<string>? alpn = null)
    {
        var transport = new ScriptedTransport([]);
        var options = new TlsClientOptions
        {
            ServerName = serverName,
            CipherSuites = suites ?? [CipherSuite.Aes128GcmSha256, CipherSuite.Aes256GcmSha384],
            ApplicationProtocols = alpn ?? [],
            CertificateValidator = new AcceptTraceCertificate(),
            ResumptionTicket = ticket,
            EarlyData = "GET / HTTP/1.1\r\n\r\n"u8.ToArray(),
            Time = new FixedTime { Now = new FixedTime().Now.AddSeconds(5) },
        };
        await Assert.ThrowsAsync<TlsException>(() => TlsClient.ConnectAsync(transport, options, CancellationToken.None));
        var hello = TraceServer.Records(transport.Written).First()[5..];
        return ClientHelloParts.Split(hello).Extensions.Select(e => (e.Item1, e.Item2)).ToList();
    }

    private const ushort PreSharedKey = 41;
    private const ushort EarlyData = 42;

    [Fact]
    public async Task ATicket_IsOfferedWithEarlyData_WhereItWasIssued()
    {
        var extensions = await ClientHelloExtensionsAsync(Ticket(alpn: "h2"), alpn: ["h2"]);
        Assert.Contains(extensions, e => e.Type == PreSharedKey);
        Assert.Contains(extensions, e => e.Type == EarlyData);
    }

    [Fact]
    public async Task ATicket_IsNotOfferedToAnotherServerName()
    {
        var extensions = await ClientHelloExtensionsAsync(Ticket(serverName: "server"), serverName: "other.example");
        Assert.DoesNotContain(extensions, e => e.Type == PreSharedKey);
        Assert.DoesNotContain(extensions, e => e.Type == EarlyData);
    }

    [Fact]
    public async Task ATicket_IsNotOfferedWithoutASuiteOfItsHash()
    {
        var extensions = await ClientHelloExtensionsAsync(Ticket(suite: CipherSuite.Aes128GcmSha256), suites: [CipherSuite.Aes256GcmSha384]);
        Assert.DoesNotContain(extensions, e => e.Type == PreSharedKey);
    }

    [Fact]
    public async Task EarlyData_IsNotSentUnderAnotherAlpn_OrAnotherSuiteOfTheSameHash()
    {
        var otherAlpn = await ClientHelloExtensionsAsync(Ticket(alpn: "h2"), alpn: ["http/1.1"]);
        Assert.DoesNotContain(otherAlpn, e => e.Type == EarlyData);
        var noAlpn = await ClientHelloExtensionsAsync(Ticket(alpn: "h2"));
        Assert.DoesNotContain(noAlpn, e => e.Type == EarlyData);
        var otherSuite = await ClientHelloExtensionsAsync(Ticket(suite: CipherSuite.Aes128GcmSha256), suites: [CipherSuite.ChaCha20Poly1305Sha256]);
        Assert.Contains(otherSuite, e => e.Type == PreSharedKey); // same hash: resumption may go ahead
        Assert.DoesNotContain(otherSuite, e => e.Type == EarlyData);
    }
}
