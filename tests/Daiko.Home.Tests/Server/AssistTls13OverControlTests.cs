using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Daiko.Terminal.Sessions;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// Assist over TLS 1.3 against a real home server and two real nginx markets, with a terminal that does
/// not keep to the protocol: granted assist at market A (localhost), with A's chain verified, it asks
/// the home card to sign for a handshake with market B (a certificate for another name), or sends the
/// content without its handshake, or content other than the handshake's. Each is refused with
/// <c>bad-content</c>, audited for market A, and nothing is signed; the terminal's own assist still works.
/// </summary>
[Collection("home card")]
public sealed class AssistTls13OverControlTests : IAsyncLifetime
{
    private const string OtherName = "market-b.test";

    private HomeFixture _home = null!;
    private NginxServer _marketA = null!;
    private NginxServer _marketB = null!;

    public async Task InitializeAsync()
    {
        _home = HomeFixture.Start();
        _marketA = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        var localhost = _home.Pki.Server;
        _home.Pki.WithServer(_home.Pki.IssueServer("market-b", OtherName));
        try
        {
            _marketB = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        }
        finally
        {
            _home.Pki.WithServer(localhost);
        }
    }

    public async Task DisposeAsync()
    {
        _marketA.Dispose();
        _marketB.Dispose();
        await _home.DisposeAsync();
    }

    private string MarketA => $"localhost:{_marketA.Port}";

    /// <summary>An approved assist at market A whose chain the home server verified for this device: the owner's chain.</summary>
    private async Task<IReadOnlyList<byte[]>> AssistAtMarketAAsync(ControlConnection control, CancellationToken ct)
    {
        var assist = await control.RequestAsync<AssistReply>(new DelegateRequest(new MarketAddress("localhost", _marketA.Port, null, null), DelegationMode.Assist), ct);
        Assert.True((await control.RequestAsync<VerdictReply>(new VerifyChainRequest("localhost", [_home.Pki.Server.Certificate.RawData, _home.Pki.Root.RawData]), ct)).Trusted);
        return assist.Chain;
    }

    /// <summary>The terminal's own handshake with a market, the home card asked to sign through <paramref name="signer"/>; the home server's refusal.</summary>
    private static async Task<ControlErrorException> RefusedHandshakeAsync(int port, string serverName, IReadOnlyList<byte[]> chain, ITlsSigner signer,
        IServerCertificateValidator validator, CancellationToken ct)
    {
        var e = await Assert.ThrowsAsync<TlsException>(async () => await TlsClient.ConnectAsync("127.0.0.1", port, new TlsClientOptions
        {
            ServerName = serverName,
            ClientCredential = new ClientCredential(chain, signer),
            CertificateValidator = validator,
        }, ct));
        Assert.Equal(TlsError.SignerFailed, e.Error);
        return Assert.IsType<ControlErrorException>(e.InnerException);
    }

    [Fact]
    public async Task ASignatureForAnotherMarketsHandshake_IsRefused_Audited_AndNothingIsSigned()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var trustRoot = new X509ChainValidator([_home.Pki.Root]);

        // Market B under its own name: a handshake the terminal trusts, but not with the market of this assist.
        var chain = await AssistAtMarketAAsync(control, cts.Token);
        var e = await RefusedHandshakeAsync(_marketB.Port, OtherName, chain, new HomeSigner(control), trustRoot, cts.Token);
        Assert.Equal(ErrorCode.BadContent, e.Code);
        Assert.Contains($"names {OtherName}, not the market of this assist (localhost)", e.Message, StringComparison.Ordinal);

        // Market B under A's name: B's chain is not A's.
        chain = await AssistAtMarketAAsync(control, cts.Token);
        e = await RefusedHandshakeAsync(_marketB.Port, "localhost", chain, new HomeSigner(control), new AnyChain(), cts.Token);
        Assert.Equal(ErrorCode.BadContent, e.Code);
        Assert.Contains("not trusted for localhost", e.Message, StringComparison.Ordinal);

        // Market A itself, but content other than its handshake's.
        chain = await AssistAtMarketAAsync(control, cts.Token);
        e = await RefusedHandshakeAsync(_marketA.Port, "localhost", chain, new HomeSigner(control, alterContent: true), trustRoot, cts.Token);
        Assert.Equal(ErrorCode.BadContent, e.Code);
        Assert.Contains("not the CertificateVerify content of the handshake", e.Message, StringComparison.Ordinal);

        var signs = (await _home.Server.Devices.AuditLogAsync()).Where(a => a.Action == "sign").ToList();
        Assert.Equal(3, signs.Count(a => a.Outcome == "refused: not CertificateVerify content" && a.Market == MarketA));
        Assert.DoesNotContain(signs, a => a.Outcome == "signed");
    }

    [Fact]
    public async Task Tls13ContentWithoutItsHandshake_AsAnOlderTerminalSendsIt_IsRefusedAndAudited()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        await AssistAtMarketAAsync(control, cts.Token);

        var e = await Assert.ThrowsAsync<ControlErrorException>(() =>
            control.RequestAsync(new SignRequest(SignatureScheme.EcdsaSecp256r1Sha256, Authority.PerDeviceAuthorityTests.CertificateVerifyContent()), cts.Token));

        Assert.Equal(ErrorCode.BadContent, e.Code);
        Assert.Contains("this terminal sent none: update the terminal", e.Message, StringComparison.Ordinal);
        var signs = (await _home.Server.Devices.AuditLogAsync()).Where(a => a.Action == "sign").ToList();
        Assert.Contains(signs, a => a.Outcome == "refused: TLS 1.3 content without its handshake" && a.Market == MarketA);
        Assert.DoesNotContain(signs, a => a.Outcome == "signed");
    }

    [Fact]
    public async Task TheTerminalsOwnAssist_SendsTheHandshake_AndIsSigned()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);

        var session = await new DelegatedConnector(control).ConnectAsync("localhost", _marketA.Port, DelegationMode.Assist, cancellationToken: cts.Token);

        Assert.True((ushort)session.Tls!.CipherSuite < 0x1400, $"not a TLS 1.3 suite: {session.Tls.CipherSuite}");
        Assert.Contains("Alice Example", await DelegationEndToEndTests.GetAsync(session.Stream, cts.Token), StringComparison.Ordinal);
        Assert.Contains((await _home.Server.Devices.AuditLogAsync()).Where(a => a.Action == "sign"), a => a.Outcome == "signed" && a.Market == MarketA);
    }

    /// <summary>A terminal's signer that sends the handshake with the content, as the protocol says; or, told to, content for another hash.</summary>
    private sealed class HomeSigner(ControlConnection control, bool alterContent = false) : ITranscriptSigner
    {
        public IReadOnlyList<SignatureScheme> SupportedSchemes { get; } = [SignatureScheme.EcdsaSecp256r1Sha256];

        public ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("TLS 1.3 only");

        public async ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, ReadOnlyMemory<byte> transcript, CancellationToken cancellationToken)
        {
            var sent = content.ToArray();
            if (alterContent) sent[^1] ^= 0x01;
            return (await control.RequestAsync<SignatureReply>(new SignRequest(scheme, sent, transcript.ToArray()), cancellationToken)).Signature;
        }
    }

    private sealed class AnyChain : IServerCertificateValidator
    {
        public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken) =>
            ValueTask.FromResult(CertificateVerdict.Ok);
    }
}
