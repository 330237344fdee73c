using Daiko.TestSupport.Hostile;

namespace Daiko.Hostile.Tests;

/// <summary>RFC 8446 rules a market may break; each one is refused with the alert the RFC names.</summary>
public sealed class RfcRuleTests(HostilePki pki) : HostileMarketBase(pki), IClassFixture<HostilePki>
{
    private const ushort Secp256r1 = 23, X25519 = 29;

    private async Task RefusedAsync(HandshakePlan plan, byte alert, Func<HostileConnection, Task>? script = null)
    {
        // The market holds the connection past the bound below: a client that does not refuse would outlast it.
        var (client, market) = await FetchAsync(script ?? (_ => Task.Delay(TimeSpan.FromSeconds(30))), plan);
        AssertExit(1, client, market);
        AssertAlert(alert, client, market);
        // A whole process, .NET's start-up included (seconds on a loaded machine), against the 30 s the market holds on.
        AssertWithin(20, client);
    }

    /// <summary>§4.2.8: after a HelloRetryRequest the key share must be for the group it asked for.</summary>
    [Fact]
    public Task KeyShareForAnotherGroupThanTheRetryAsked_IsIllegalParameter() =>
        RefusedAsync(new HandshakePlan { RetryGroup = Secp256r1, ServerHelloGroup = X25519 }, Alert.IllegalParameter);

    /// <summary>§4.2: an extension the client never offered is unsupported_extension.</summary>
    [Theory]
    [InlineData((ushort)15)]
    [InlineData((ushort)0xFF01)]
    public Task UnofferedExtensionInEncryptedExtensions_IsUnsupportedExtension(ushort type) =>
        RefusedAsync(new HandshakePlan { ExtraEncryptedExtensions = [(type, [1])] }, Alert.UnsupportedExtension);

    /// <summary>RFC 8449 §4: a record_size_limit below 64 is illegal_parameter.</summary>
    [Fact]
    public Task RecordSizeLimitBelow64_IsIllegalParameter() =>
        RefusedAsync(new HandshakePlan { ExtraEncryptedExtensions = [(28, [0, 63])] }, Alert.IllegalParameter);

    /// <summary>RFC 8449 §4: the client sends no record whose inner plaintext exceeds the server's limit.</summary>
    [Fact]
    public async Task RecordSizeLimitOfTheServer_BoundsEveryRecordTheClientSends()
    {
        var largest = 0;
        var request = "";
        var (client, market) = await FetchAsync(async c =>
        {
            request = await c.ReadRequestAsync();
            largest = c.LargestClientInnerPlaintext;
            await c.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            await c.SendCloseNotifyAsync();
        }, new HandshakePlan { ExtraEncryptedExtensions = [(28, [0, 64])] });
        AssertExit(0, client, market);
        Assert.True(request.Length > 64, $"the request head must not fit one limited record: {request.Length} bytes");
        Assert.InRange(largest, 1, 64);
    }

    /// <summary>§4.2: no two extensions of one type in a block.</summary>
    [Fact]
    public Task DuplicateExtensionInCertificateRequest_IsIllegalParameter() =>
        RefusedAsync(new HandshakePlan { CertificateRequestExtensions = [(13, [0, 2, 4, 3]), (13, [0, 2, 4, 3])] }, Alert.IllegalParameter);

    [Fact]
    public async Task DuplicateExtensionInNewSessionTicket_IsIllegalParameter()
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendTicketAsync(64, extensions: [0, 42, 0, 4, 0, 0, 0, 0, 0, 42, 0, 4, 0, 0, 0, 0]);
            await c.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            await c.WaitForClientAlertAsync(TimeSpan.FromSeconds(25));
        });
        AssertExit(1, client, market);
        AssertAlert(Alert.IllegalParameter, client, market);
        AssertWithin(20, client);
    }

    /// <summary>§4.2.1: supported_versions naming a version before TLS 1.3 is illegal_parameter.</summary>
    [Fact]
    public Task SupportedVersionsOfTls12InServerHello_IsIllegalParameter() =>
        RefusedAsync(new HandshakePlan { SupportedVersion = 0x0303 }, Alert.IllegalParameter);
}
