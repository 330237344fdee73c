using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Interop.Tests;

/// <summary>
/// Daiko.Tls against real servers that speak only TLS 1.2 (OpenSSL, GnuTLS, nginx): a full handshake
/// with a client certificate, resumption by an RFC 5077 ticket, and servers that speak both versions,
/// which must never be negotiated down.
/// </summary>
public sealed class Tls12InteropTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-tls12");
    private readonly TestPki _pki;

    public Tls12InteropTests()
    {
        _pki = TestPki.Create(_dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> Peers => new() { "openssl", "gnutls", "nginx" };

    private TlsClientOptions Options(TlsVersions versions, TlsCounters? counters = null) => new()
    {
        ServerName = "localhost",
        Versions = versions,
        ClientCredential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath, counters),
        CertificateValidator = new X509ChainValidator([_pki.Root], counters: counters),
        Counters = counters,
        HandshakeTimeout = TimeSpan.FromSeconds(10),
    };

    /// <summary>
    /// A ticket lives as long as its market announces (RFC 5077's lifetime hint), and one announced past 7 days, or not at
    /// all, is taken to live 7 days: what a device's ticket count and ticket lifetime are judged by, so a market whose
    /// tickets last long is never counted as if they lasted less. nginx announces its session timeout.
    /// </summary>
    [Theory]
    [InlineData(600, 600u)]
    [InlineData(30 * 24 * 3600, 7u * 24 * 3600)]
    public async Task ATicketsLifetime_IsTheMarketsHint_AndAtMostSevenDays_NeverLessThanAnnounced(int sessionTimeoutSeconds, uint expected)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await NginxServer.StartAsync(_pki, _dir.Path, new TlsPeerOptions { Versions = "1.2", SessionTimeoutSeconds = sessionTimeoutSeconds });
        await using var connection = await EngineInteropTests.ConnectAsync(peer.Port, Options(TlsVersions.Both), cts.Token);

        Assert.Equal(TlsVersions.Tls12, connection.Version);
        var ticket = Assert.Single(connection.Tickets);
        Assert.Equal(expected, ticket.LifetimeSeconds);
        Assert.Equal(ticket.ReceivedAt.AddSeconds(expected), ticket.ExpiresAt);
    }

    /// <summary>
    /// A session nobody takes tickets from (one the home server relays): its TLS 1.2 ticket, whose secret is the session's
    /// master secret, is wiped once the tickets are forgone, and so is each TLS 1.3 ticket that comes after, as it comes; a
    /// ticket taken before stays whole. nginx sends a TLS 1.2 ticket inside the handshake and TLS 1.3 tickets after it.
    /// </summary>
    [Theory]
    [InlineData("1.2")]
    [InlineData("1.3")]
    public async Task ForgoneTickets_AreWiped_ThoseReceivedLaterAsTheyCome_ATakenOneIsLeftWhole(string version)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await NginxServer.StartAsync(_pki, _dir.Path, new TlsPeerOptions { Versions = version });

        await using (var relayed = await EngineInteropTests.ConnectAsync(peer.Port, Options(TlsVersions.Both), cts.Token))
        {
            var before = relayed.Tickets;
            relayed.ForgoTickets();
            await EngineInteropTests.GetAsync(relayed, peer.Host, peer.IdentityPath, cts.Token);
            Assert.Empty(relayed.Tickets);
            Assert.Null(await relayed.WaitForTicketAsync(TimeSpan.Zero, cts.Token));
            // TLS 1.2: the ticket came in the handshake, before the tickets were forgone; TLS 1.3: nginx's came after, with the response.
            if (version == "1.2") Assert.NotEmpty(before);
            else Assert.Empty(before);
            Assert.True(relayed.TicketsWiped >= 1, $"{relayed.TicketsWiped} tickets wiped");
            Assert.All(before, t => Assert.True(t.Psk.All(b => b == 0), "a ticket held before the tickets were forgone still has its secret"));
        }

        await using var absorbing = await EngineInteropTests.ConnectAsync(peer.Port, Options(TlsVersions.Both), cts.Token);
        if (version == "1.3") await EngineInteropTests.GetAsync(absorbing, peer.Host, peer.IdentityPath, cts.Token);
        var taken = await absorbing.WaitForTicketAsync(TimeSpan.FromSeconds(5), cts.Token);
        Assert.NotNull(taken);
        var secret = taken.Psk.ToArray();
        absorbing.ForgoTickets();
        Assert.Contains(secret, b => b != 0);
        Assert.Equal(secret, taken.Psk);
        Assert.Contains(absorbing.Tickets, t => ReferenceEquals(t, taken));
    }

    [Theory]
    [MemberData(nameof(Peers))]
    public async Task FullHandshake_Tls12Only_WithClientCertificate_ServerSeesTheUser(string name)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path, new TlsPeerOptions { Versions = "1.2" });
        await using var connection = await EngineInteropTests.ConnectAsync(peer.Port, Options(TlsVersions.Both), cts.Token);

        Assert.Equal(TlsVersions.Tls12, connection.Version);
        Assert.False(connection.Resumed);
        var body = await EngineInteropTests.GetAsync(connection, peer.Host, peer.IdentityPath, cts.Token);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Peers))]
    public async Task Resume_ByTls12Ticket_RunsNoPublicKeyOperation_AndServerStillSeesTheUser(string name)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path, new TlsPeerOptions { Versions = "1.2" });
        SessionTicket ticket;
        await using (var first = await EngineInteropTests.ConnectAsync(peer.Port, Options(TlsVersions.Tls12), cts.Token))
        {
            ticket = Assert.Single(first.Tickets);
            Assert.Equal(TlsVersions.Tls12, ticket.Version);
            await EngineInteropTests.GetAsync(first, peer.Host, peer.IdentityPath, cts.Token);
        }
        var counters = new TlsCounters();
        var roundTrip = Daiko.Protocol.Codecs.SessionTicketCodec.Decode(Daiko.Protocol.Codecs.SessionTicketCodec.Encode(ticket));
        await using var resumed = await EngineInteropTests.ConnectAsync(peer.Port, Options(TlsVersions.Both, counters) with { ResumptionTicket = roundTrip }, cts.Token);

        Assert.True(resumed.Resumed, $"{name} did not resume:\n{peer.Log}");
        Assert.Equal(TlsVersions.Tls12, resumed.Version);
        Assert.Equal(0, counters.PublicKeyOperations - 1); // only the TLS 1.3 key share of the ClientHello
        var body = await EngineInteropTests.GetAsync(resumed, peer.Host, peer.IdentityPath, cts.Token);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Peers))]
    public async Task AServerSpeakingBothVersions_IsNeverNegotiatedDown(string name)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var peer = await PeerFactory.StartAsync(name, _pki, _dir.Path, new TlsPeerOptions { Versions = "both" });
        await using var connection = await EngineInteropTests.ConnectAsync(peer.Port, Options(TlsVersions.Both), cts.Token);

        Assert.Equal(TlsVersions.Tls13, connection.Version);
        var body = await EngineInteropTests.GetAsync(connection, peer.Host, peer.IdentityPath, cts.Token);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }
}

/// <summary>TLS 1.2 over each server key type and each AEAD suite of the profile, against OpenSSL.</summary>
public sealed class Tls12KeyAndSuiteInteropTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-tls12-keys");
    private readonly TestPki _pki;

    public Tls12KeyAndSuiteInteropTests()
    {
        _pki = TestPki.Create(_dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("ec-p256", CipherSuite.EcdheEcdsaAes128GcmSha256)]
    [InlineData("ec-p384", CipherSuite.EcdheEcdsaAes256GcmSha384)]
    [InlineData("ec-p256", CipherSuite.EcdheEcdsaChaCha20Poly1305Sha256)]
    [InlineData("rsa", CipherSuite.EcdheRsaAes128GcmSha256)]
    [InlineData("rsa", CipherSuite.EcdheRsaAes256GcmSha384)]
    [InlineData("rsa", CipherSuite.EcdheRsaChaCha20Poly1305Sha256)]
    [InlineData("rsa-pss", CipherSuite.EcdheRsaAes128GcmSha256)]
    public async Task FullHandshake_Tls12_WithEachServerKeyAndSuite(string serverKey, CipherSuite suite)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        _pki.WithServer(serverKey switch
        {
            "rsa-pss" => RsaPssKeyInteropTests.IssuePssServer(_pki, _dir.Path),
            "rsa" => _pki.IssueServer("rsa", "localhost", TestKeyKind.Rsa2048),
            "ec-p384" => _pki.IssueServer("p384", "localhost", TestKeyKind.EcP384),
            _ => _pki.Server,
        });
        using var peer = await OpenSslServer.StartAsync(_pki, new TlsPeerOptions { Versions = "1.2" });
        var options = new TlsClientOptions
        {
            ServerName = "localhost",
            Versions = TlsVersions.Tls12,
            Tls12CipherSuites = [suite],
            Groups = [NamedGroup.Secp384r1, NamedGroup.Secp256r1],
            ClientCredential = SoftwareSigner.LoadCredential(_pki.User.CertificatePath, _pki.User.KeyPath),
            CertificateValidator = new X509ChainValidator([_pki.Root]),
            HandshakeTimeout = TimeSpan.FromSeconds(10),
        };

        await using var connection = await EngineInteropTests.ConnectAsync(peer.Port, options, cts.Token);

        Assert.Equal(suite, connection.CipherSuite);
        Assert.Equal(NamedGroup.Secp384r1, connection.Group);
        var body = await EngineInteropTests.GetAsync(connection, peer.Host, peer.IdentityPath, cts.Token);
        Assert.Contains("Alice Example", body, StringComparison.Ordinal);
    }
}
