using Daiko.Tls.Tests.Rfc8448;

namespace Daiko.Tls.Tests.Handshake;

/// <summary>
/// A ClientHello that may only resume (<see cref="TlsClientOptions.ResumeOnly"/>) carries what a PSK
/// handshake uses and nothing a full handshake alone would (RFC 8446 §9.2): read from the hello the
/// engine writes.
/// </summary>
public sealed class ResumeOnlyHelloTests
{
    private const ushort SupportedGroups = 10;
    private const ushort SignatureAlgorithms = 13;
    private const ushort PreSharedKey = 41;
    private const ushort PskKeyExchangeModes = 45;
    private const ushort KeyShare = 51;

    private static async Task<(CipherSuite[] Suites, List<ushort> Extensions, int Length)> HelloAsync(bool resumeOnly, PskKeyExchangeMode kex, bool withTicket = true)
    {
        var transport = new ScriptedTransport([]);
        var options = new TlsClientOptions
        {
            ServerName = "server",
            CertificateValidator = new AcceptTraceCertificate(),
            ResumptionTicket = withTicket ? new SessionTicket(new byte[] { 1, 2, 3, 4 }, new byte[32], CipherSuite.Aes128GcmSha256, "server", null, 3600, 1, 0, new FixedTime().Now, [0]) : null,
            PskModes = [kex],
            ResumeOnly = resumeOnly,
            Time = new FixedTime { Now = new FixedTime().Now.AddSeconds(5) },
        };
        await Assert.ThrowsAsync<TlsException>(() => TlsClient.ConnectAsync(transport, options, CancellationToken.None));
        var hello = TraceServer.Records(transport.Written).First()[5..];
        var (_, suites, extensions) = ClientHelloParts.Split(hello);
        return (suites, extensions.Select(e => e.Item1).ToList(), hello.Length);
    }

    [Fact]
    public async Task WithPskDheKe_ItOffersTheTicketsSuiteAndAKeyShare_ButNoSignatureAlgorithms()
    {
        var (suites, extensions, length) = await HelloAsync(resumeOnly: true, PskKeyExchangeMode.PskDheKe);
        var (_, _, fullLength) = await HelloAsync(resumeOnly: false, PskKeyExchangeMode.PskDheKe);

        Assert.Equal([CipherSuite.Aes128GcmSha256], suites);
        Assert.DoesNotContain(SignatureAlgorithms, extensions);
        Assert.Contains(KeyShare, extensions);
        Assert.Contains(SupportedGroups, extensions);
        Assert.Contains(PskKeyExchangeModes, extensions);
        Assert.Equal(PreSharedKey, extensions[^1]);
        Assert.True(length < fullLength, $"{length} bytes against {fullLength}");
    }

    [Fact]
    public async Task WithPskKeAlone_ItOffersNoGroupsAndNoKeyShare()
    {
        var (_, extensions, _) = await HelloAsync(resumeOnly: true, PskKeyExchangeMode.PskKe);

        Assert.DoesNotContain(SupportedGroups, extensions);
        Assert.DoesNotContain(KeyShare, extensions);
        Assert.DoesNotContain(SignatureAlgorithms, extensions);
        Assert.Equal(PreSharedKey, extensions[^1]);
    }

    [Fact]
    public async Task WithoutAUsableTicket_ItIsAFullHello()
    {
        var (suites, extensions, _) = await HelloAsync(resumeOnly: true, PskKeyExchangeMode.PskKe, withTicket: false);

        Assert.Equal(3, suites.Length);
        Assert.Contains(SignatureAlgorithms, extensions);
        Assert.Contains(KeyShare, extensions);
        Assert.DoesNotContain(PreSharedKey, extensions);
    }
}
