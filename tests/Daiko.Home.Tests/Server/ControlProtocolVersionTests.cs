using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Protocol.Wire;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>The control channel's protocol version is negotiated by ALPN: a terminal without it gets a clear error, not a parse failure.</summary>
[Collection("home card")]
public sealed class ControlProtocolVersionTests : IAsyncLifetime
{
    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _home.DisposeAsync();

    private Task<TlsConnection> ConnectAsync(IReadOnlyList<string> alpn, CancellationToken ct) =>
        TlsClient.ConnectAsync("127.0.0.1", _home.Server.LocalEndPoint.Port, new TlsClientOptions
        {
            ServerName = "daiko-home",
            ApplicationProtocols = alpn,
            CertificateValidator = new AnyCertificate(),
        }, ct);

    [Fact]
    public async Task ATerminalOfferingBothVersions_AgreesOnTheNewest()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var tls = await ConnectAsync(ControlProtocol.Versions, cts.Token);

        Assert.Equal("daiko/2", tls.ApplicationProtocol);
    }

    [Theory]
    [InlineData("daiko/1")]
    [InlineData("daiko/2")]
    public async Task ATerminalOfferingOneVersion_AgreesOnIt(string version)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var tls = await ConnectAsync([version], cts.Token);

        Assert.Equal(version, tls.ApplicationProtocol);
    }

    [Fact]
    public async Task ATerminalWithoutAVersion_IsRefusedWithProtocolVersion()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var tls = await ConnectAsync([], cts.Token);

        var (frame, _) = await ControlFrame.ReadAsync(tls, new byte[4], cts.Token);

        Assert.Equal(0, frame!.Value.Id);
        var refusal = Assert.IsType<ErrorReply>(frame.Value.Message);
        Assert.Equal(ErrorCode.ProtocolVersion, refusal.Code);
        Assert.Contains("daiko/2 or daiko/1", refusal.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ATerminalOfAnotherVersion_FailsTheHandshakeWithNoApplicationProtocol()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));

        var e = await Assert.ThrowsAsync<TlsException>(() => ConnectAsync(["daiko/3"], cts.Token));

        Assert.Equal(AlertDescription.NoApplicationProtocol, e.Alert);
    }

    private sealed class AnyCertificate : IServerCertificateValidator
    {
        public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken) =>
            ValueTask.FromResult(CertificateVerdict.Ok);
    }
}
