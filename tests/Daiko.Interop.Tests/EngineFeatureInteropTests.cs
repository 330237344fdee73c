using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Interop.Tests;

/// <summary>psk_ke, 0-RTT, KeyUpdate, export/import and certificate failures against real servers.</summary>
public sealed class EngineFeatureInteropTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-interop-f");
    private readonly TestPki _pki;

    public EngineFeatureInteropTests()
    {
        _pki = TestPki.Create(_dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    private TlsClientOptions Options(TlsCounters? counters = null, string host = "localhost") => new()
    {
        ServerName = host,
        ClientCredential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath, counters),
        CertificateValidator = new X509ChainValidator([_pki.Root], counters: counters),
        Counters = counters,
        HandshakeTimeout = TimeSpan.FromSeconds(10),
    };

    private async Task<SessionTicket> FirstTicketAsync(ITlsPeer peer, CancellationToken ct)
    {
        await using var first = await EngineInteropTests.ConnectAsync(peer.Port, Options(), ct);
        await EngineInteropTests.GetAsync(first, peer.Host, peer.IdentityPath, ct);
        return first.Tickets.FirstOrDefault() ?? (await first.WaitForTicketAsync(TimeSpan.FromSeconds(2), ct))
            ?? throw new InvalidOperationException($"{peer.Name} issued no ticket");
    }

    [Theory]
    [InlineData("openssl")]
    public async Task Resume_PskKe_RunsNoPublicKeyOperation_AndServerSeesTheUser(string name)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path, new TlsPeerOptions { AllowPskKe = true });
        var ticket = await FirstTicketAsync(peer, cts.Token);
        var counters = new TlsCounters();

        await using var resumed = await EngineInteropTests.ConnectAsync(peer.Port, Options(counters) with
        {
            ResumptionTicket = ticket,
            PskModes = [PskKeyExchangeMode.PskKe],
            CertificateValidator = new X509ChainValidator([_pki.Root]),
            ClientCredential = null,
        }, cts.Token);
        var body = await EngineInteropTests.GetAsync(resumed, peer.Host, peer.IdentityPath, cts.Token);

        Assert.Equal(PskKeyExchangeMode.PskKe, resumed.KeyExchange);
        Assert.Equal(0, counters.PublicKeyOperations);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EarlyData_AcceptedByNginx_ServesTheRequestIn0Rtt()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await NginxServer.StartAsync(_pki, _dir.Path, new TlsPeerOptions { EarlyData = true });
        var request = "GET /whoami HTTP/1.0\r\nHost: localhost\r\n\r\n"u8.ToArray();
        // nginx sets $ssl_early_data to "1" only when it handles the request before the client's Finished
        // has arrived, which a loaded machine can reorder; every attempt must be accepted as 0-RTT in one
        // round trip, and nginx must see the request as early data in at least one of ten.
        var answers = new List<string>();
        for (var attempt = 0; attempt < 10 && !answers.Any(a => a.Contains("reused=r early=1\n", StringComparison.Ordinal)); attempt++)
        {
            var ticket = await FirstTicketAsync(peer, cts.Token);
            Assert.True(ticket.MaxEarlyData > 0, "nginx with ssl_early_data must allow early data");
            var counters = new TlsCounters();
            // nginx answers the early request and closes before the client's Finished arrives: the answer
            // (0.5-RTT data, authenticated by the server's Finished) must still be readable.
            await using var resumed = await EngineInteropTests.ConnectAsync(peer.Port, Options(counters) with { ResumptionTicket = ticket, EarlyData = request }, cts.Token);
            using var body = new MemoryStream();
            await resumed.CopyToAsync(body, cts.Token);

            Assert.True(resumed.EarlyDataAccepted);
            var text = System.Text.Encoding.UTF8.GetString(body.ToArray());
            Assert.Contains("reused=r ", text, StringComparison.Ordinal);
            Assert.Contains("Alice Example", text, StringComparison.Ordinal);
            Assert.Equal(1, counters.RoundTrips);
            answers.Add(text);
        }
        Assert.Contains(answers, a => a.Contains("reused=r early=1\n", StringComparison.Ordinal));
    }

    [Fact]
    public async Task EarlyData_AcceptedByOpenSsl_ArrivesBeforeTheHandshakeCompletes()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { EarlyData = true, Www = false, Tickets = 1 });
        SessionTicket ticket;
        await using (var first = await EngineInteropTests.ConnectAsync(peer.Port, Options(), cts.Token))
        {
            ticket = first.Tickets.FirstOrDefault() ?? await first.WaitForTicketAsync(TimeSpan.FromSeconds(5), cts.Token)
                ?? throw new InvalidOperationException("openssl issued no ticket");
        }
        Assert.True(ticket.MaxEarlyData > 0, "s_server -early_data must allow early data");
        var counters = new TlsCounters();

        await using var resumed = await EngineInteropTests.ConnectAsync(peer.Port, Options(counters) with
        {
            ResumptionTicket = ticket,
            EarlyData = "early words from daiko\n"u8.ToArray(),
        }, cts.Token);
        await resumed.WriteAsync("late words from daiko\n"u8.ToArray(), cts.Token);
        await resumed.FlushAsync(cts.Token);

        Assert.True(resumed.EarlyDataAccepted);
        Assert.Equal(PskKeyExchangeMode.PskDheKe, resumed.KeyExchange);
        await peer.WaitForOutputAsync("late words from daiko", TimeSpan.FromSeconds(10));
        // s_server writes the early bytes straight to stdout and its own lines through a buffer, so
        // their order in the log is not fixed: check each is there.
        Assert.Contains("Early data received:", peer.Log, StringComparison.Ordinal);
        Assert.Contains("early words from daiko", peer.Log, StringComparison.Ordinal);
        Assert.DoesNotContain("Early data was rejected", peer.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EarlyData_RejectedByOpenSsl_IsReportedAndTheConnectionStillWorks()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        // The ticket allows early data, but this server instance (new ticket keys, no -early_data) rejects it.
        SessionTicket ticket;
        using (var issuing = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { EarlyData = true, Www = false, Tickets = 1 }))
        {
            await using var first = await EngineInteropTests.ConnectAsync(issuing.Port, Options(), cts.Token);
            ticket = first.Tickets.FirstOrDefault() ?? await first.WaitForTicketAsync(TimeSpan.FromSeconds(5), cts.Token)
                ?? throw new InvalidOperationException("openssl issued no ticket");
        }
        using var peer = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions());

        await using var connection = await EngineInteropTests.ConnectAsync(peer.Port, Options() with
        {
            ResumptionTicket = ticket,
            EarlyData = "GET / HTTP/1.0\r\n\r\n"u8.ToArray(),
        }, cts.Token);
        var body = await EngineInteropTests.GetAsync(connection, peer.Host, peer.IdentityPath, cts.Token);

        Assert.False(connection.EarlyDataAccepted);
        Assert.Null(connection.KeyExchange); // the unknown ticket fell back to a full handshake
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task KeyUpdate_BothWays_InstallsTheNextTrafficSecretInEachDirection()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await NginxServer.StartAsync(_pki, _dir.Path);
        var connection = await EngineInteropTests.ConnectAsync(peer.Port, Options(), cts.Token);
        await connection.WaitForTicketAsync(TimeSpan.FromMilliseconds(500), cts.Token);
        var transport = connection.Transport;
        // Export shows the secrets in use; importing continues the same connection.
        var before = connection.Export();
        await using var continued = TlsClient.Import(transport, before);

        await continued.KeyUpdateAsync(requestPeerUpdate: true, cts.Token);
        // HTTP/1.1 keeps the connection open, so it can be exported again once the answer is in.
        await continued.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"GET {peer.IdentityPath} HTTP/1.1\r\nHost: {peer.Host}\r\n\r\n"), cts.Token);
        var received = new MemoryStream();
        var buffer = new byte[4096];
        while (!System.Text.Encoding.UTF8.GetString(received.ToArray()).Contains("Alice Example", StringComparison.Ordinal))
        {
            var n = await continued.ReadAsync(buffer, cts.Token);
            Assert.True(n > 0, "nginx closed before answering");
            received.Write(buffer, 0, n);
        }
        var after = continued.Export();

        // RFC 8446 §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length).
        Assert.Equal(Convert.ToHexString(NextTrafficSecret(before.Suite, before.ClientSecret)), Convert.ToHexString(after.ClientSecret));
        Assert.Equal(Convert.ToHexString(NextTrafficSecret(before.Suite, before.ServerSecret)), Convert.ToHexString(after.ServerSecret));
        transport.Dispose();
    }

    private static byte[] NextTrafficSecret(CipherSuite suite, byte[] secret)
    {
        var hash = suite == CipherSuite.Aes256GcmSha384 ? System.Security.Cryptography.HashAlgorithmName.SHA384 : System.Security.Cryptography.HashAlgorithmName.SHA256;
        var label = System.Text.Encoding.ASCII.GetBytes("tls13 traffic upd");
        byte[] info = [(byte)(secret.Length >> 8), (byte)secret.Length, (byte)label.Length, .. label, 0];
        return System.Security.Cryptography.HKDF.Expand(hash, secret, secret.Length, info);
    }

    [Fact]
    public async Task ExportThenImport_ContinuesTheRecordLayerOnTheSameTransport()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await NginxServer.StartAsync(_pki, _dir.Path);
        var connection = await EngineInteropTests.ConnectAsync(peer.Port, Options(), cts.Token);
        await connection.WaitForTicketAsync(TimeSpan.FromMilliseconds(500), cts.Token);
        var transport = connection.Transport;

        var exported = Daiko.Protocol.Codecs.ExportedSessionCodec.Decode(Daiko.Protocol.Codecs.ExportedSessionCodec.Encode(connection.Export()));
        await Assert.ThrowsAsync<TlsException>(async () => await connection.WriteAsync(new byte[1], cts.Token));
        await using var continued = TlsClient.Import(transport, exported);
        var body = await EngineInteropTests.GetAsync(continued, peer.Host, peer.IdentityPath, cts.Token);

        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToHexString(exported.ClientSecret), exported.ToString(), StringComparison.Ordinal);
    }

    public static TheoryData<string, AlertDescription> BadCertificates => new()
    {
        { "expired", AlertDescription.CertificateExpired },
        { "wrong-host", AlertDescription.BadCertificate },
        { "unknown-ca", AlertDescription.UnknownCa },
    };

    [Theory]
    [MemberData(nameof(BadCertificates))]
    public async Task Refuses_ABadServerCertificate_WithTheRightAlert(string kind, AlertDescription alert)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var pki = kind switch
        {
            "unknown-ca" => TestPki.Create(Path.Combine(_dir.Path, "other"), rootName: "Someone Else"),
            _ => _pki,
        };
        if (kind == "expired")
        {
            var now = DateTimeOffset.UtcNow;
            var expired = pki.IssueServer("expired", "localhost", notBefore: now.AddDays(-10), notAfter: now.AddDays(-1));
            pki = TestPkiWithServer(pki, expired);
        }
        if (kind == "wrong-host") pki = TestPkiWithServer(pki, pki.IssueServer("other", "other.example"));
        using var peer = await OpenSslServer.StartAsync(pki, new TlsPeerOptions { RequireClientCertificate = false });

        var e = await Assert.ThrowsAsync<TlsException>(() => EngineInteropTests.ConnectAsync(peer.Port, Options(), cts.Token));

        Assert.Equal(TlsError.CertificateRejected, e.Error);
        Assert.Equal(alert, e.Alert);
    }

    /// <summary>
    /// The market's leaf is parsed once and shared between handshakes, and the home server's verdicts are
    /// cached per chain: neither may let a changed certificate, an expired one or a root no longer trusted through.
    /// </summary>
    [Fact]
    public async Task AMarketMetAgain_StillHasItsChainJudged_EveryHandshake()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var trusted = new CachingCertificateValidator(new X509ChainValidator([_pki.Root]));
        using (var good = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { RequireClientCertificate = false }))
        {
            for (var i = 0; i < 2; i++)
            {
                await using var connection = await EngineInteropTests.ConnectAsync(good.Port, Options() with { CertificateValidator = trusted }, cts.Token);
            }
            Assert.Equal(1, trusted.Hits);

            // The same leaf, already parsed and its chain once trusted, against roots that no longer include its own.
            var other = TestPki.Create(Path.Combine(_dir.Path, "anchor-removed"), rootName: "Only This Root");
            var removed = await Assert.ThrowsAsync<TlsException>(() => EngineInteropTests.ConnectAsync(good.Port,
                Options() with { CertificateValidator = new CachingCertificateValidator(new X509ChainValidator([other.Root])) }, cts.Token));
            Assert.Equal(AlertDescription.UnknownCa, removed.Alert);
        }

        // Same name, same issuer, another certificate (expired) on the next handshake through the same cache.
        var now = DateTimeOffset.UtcNow;
        var expired = _pki.WithServer(_pki.IssueServer("expired-later", "localhost", notBefore: now.AddDays(-10), notAfter: now.AddDays(-1)));
        using (var changed = await OpenSslServer.StartAsync(expired, new TlsPeerOptions { RequireClientCertificate = false }))
        {
            var e = await Assert.ThrowsAsync<TlsException>(() => EngineInteropTests.ConnectAsync(changed.Port, Options() with { CertificateValidator = trusted }, cts.Token));
            Assert.Equal(TlsError.CertificateRejected, e.Error);
            Assert.Equal(AlertDescription.CertificateExpired, e.Alert);
        }
    }

    private static TestPki TestPkiWithServer(TestPki pki, IssuedCertificate server) => pki.WithServer(server);
}
