using Daiko.Protocol.Codecs;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Interop.Tests;

/// <summary>
/// Handoff to a device whose ticket lifetime the owner limits: the session is exported without its
/// resumption secret, so the tickets nginx sends on the continued connection give the importer nothing.
/// </summary>
public sealed class ExportWithoutResumptionTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-interop-x");
    private readonly TestPki _pki;

    public ExportWithoutResumptionTests()
    {
        _pki = TestPki.Create(_dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    private TlsClientOptions Options() => new()
    {
        ServerName = "localhost",
        ClientCredential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath),
        CertificateValidator = new X509ChainValidator([_pki.Root]),
        HandshakeTimeout = TimeSpan.FromSeconds(10),
    };

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AnImportedSessionWithoutItsResumptionSecret_KeepsNoTicket_ButCarriesOn(bool withoutResumption)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await NginxServer.StartAsync(_pki, _dir.Path);
        var connection = await EngineInteropTests.ConnectAsync(peer.Port, Options(), cts.Token);
        var transport = connection.Transport;

        // Exported before the client reads the server's NewSessionTickets: they reach the importer.
        var export = connection.Export();
        var handed = withoutResumption ? export.WithoutResumption() : export;
        var exported = ExportedSessionCodec.Decode(ExportedSessionCodec.Encode(handed));
        await using var continued = TlsClient.Import(transport, exported);
        var body = await EngineInteropTests.GetAsync(continued, peer.Host, peer.IdentityPath, cts.Token);

        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
        Assert.Equal(!withoutResumption, exported.CanResume);
        if (withoutResumption) Assert.Empty(continued.Tickets);
        else Assert.NotEmpty(continued.Tickets);
    }
}
