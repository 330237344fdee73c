using System.Security.Cryptography;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Records;
using Daiko.Tls.Tests.Rfc8448;
using NSec.Cryptography;

namespace Daiko.Tls.Tests.Handshake;

/// <summary>
/// What a server may choose in its ServerHello and EncryptedExtensions, against what the engine's
/// ClientHello offered (RFC 8446 §4.1.2, §4.1.3, §4.2.10): a choice outside the offer is
/// illegal_parameter; a choice inside it goes on to wait for the server's Finished (here the stream ends
/// instead, so the handshake fails with the transport closed).
/// </summary>
public sealed class ServerChoicesTests
{
    private static readonly byte[] Psk = RandomNumberGenerator.GetBytes(32);

    private static SessionTicket Ticket(string? alpn) =>
        new(new byte[] { 1, 2, 3, 4 }, (byte[])Psk.Clone(), CipherSuite.Aes128GcmSha256, "server", alpn, 3600, 0x01020304, 0x4000, new FixedTime().Now, [0]);

    private static TlsClientOptions Options(SessionTicket? ticket, IReadOnlyList<string>? alpn = null) => new()
    {
        ServerName = "server",
        CipherSuites = [CipherSuite.Aes128GcmSha256, CipherSuite.ChaCha20Poly1305Sha256],
        ApplicationProtocols = alpn ?? [],
        CertificateValidator = new AcceptTraceCertificate(),
        ResumptionTicket = ticket,
        Time = new FixedTime { Now = new FixedTime().Now.AddSeconds(5) },
        HandshakeTimeout = TimeSpan.FromSeconds(20),
    };

    private static async Task<TlsException> HandshakeAsync(ChoosingServer server, TlsClientOptions options) =>
        await Assert.ThrowsAsync<TlsException>(() => TlsClient.ConnectAsync(server, options, CancellationToken.None));

    private static TlsClientOptions EarlyDataOptions() =>
        Options(Ticket(alpn: "h2"), alpn: ["h2", "http/1.1"]) with { EarlyData = "GET / HTTP/1.1\r\n\r\n"u8.ToArray() };

    /// <summary>§4.2.10: early data is accepted only with the first PSK, under the ticket's suite and ALPN.</summary>
    [Theory]
    [InlineData(false, CipherSuite.Aes128GcmSha256, "h2")]
    [InlineData(true, CipherSuite.ChaCha20Poly1305Sha256, "h2")]
    [InlineData(true, CipherSuite.Aes128GcmSha256, "http/1.1")]
    public async Task EarlyDataAccepted_WithoutTheTicketsPsk_OrUnderAnotherSuiteOrAlpn_IsIllegalParameter(bool selectPsk, CipherSuite suite, string alpn)
    {
        var server = new ChoosingServer(Psk) { SelectPsk = selectPsk, Suite = suite, Alpn = alpn, AcceptEarlyData = true };

        var e = await HandshakeAsync(server, EarlyDataOptions());

        Assert.Equal(TlsError.IllegalParameter, e.Error);
        Assert.Equal(AlertDescription.IllegalParameter, e.Alert);
    }

    [Fact]
    public async Task EarlyDataAccepted_WithTheTicketsPskSuiteAndAlpn_GoesOn()
    {
        var server = new ChoosingServer(Psk) { SelectPsk = true, Suite = CipherSuite.Aes128GcmSha256, Alpn = "h2", AcceptEarlyData = true };

        var e = await HandshakeAsync(server, EarlyDataOptions());

        Assert.Equal(TlsError.TransportClosed, e.Error);
    }

    /// <summary>§4.1.3: a hello that may only resume offers the ticket's suite alone; another suite, even one the options list, was not offered.</summary>
    [Theory]
    [InlineData(CipherSuite.ChaCha20Poly1305Sha256, TlsError.IllegalParameter)]
    [InlineData(CipherSuite.Aes128GcmSha256, TlsError.TransportClosed)]
    public async Task ResumeOnly_TheServerMayChooseOnlyTheTicketsSuite(CipherSuite chosen, TlsError expected)
    {
        var server = new ChoosingServer(Psk) { SelectPsk = true, KeyShare = false, Suite = chosen };
        var options = Options(Ticket(alpn: null)) with { ResumeOnly = true, PskModes = [PskKeyExchangeMode.PskKe] };

        var e = await HandshakeAsync(server, options);

        Assert.Equal(expected, e.Error);
        if (expected == TlsError.IllegalParameter) Assert.Equal(AlertDescription.IllegalParameter, e.Alert);
    }

    /// <summary>
    /// A hello that may only resume a TLS 1.3 session offers no TLS 1.2 even when the options allow it: a TLS 1.2
    /// server would otherwise answer it with a full handshake, and a card signature, that the caller refuses anyway.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ResumeOnly_WithATls13Ticket_OffersNoTls12_WhileAnOrdinaryHelloDoes(bool resumeOnly)
    {
        var server = new ChoosingServer(Psk) { SelectPsk = true, KeyShare = false };
        var options = Options(Ticket(alpn: null)) with { ResumeOnly = resumeOnly, Versions = TlsVersions.Tls13 | TlsVersions.Tls12 };

        await HandshakeAsync(server, options);

        var (_, suites, extensions) = ClientHelloParts.Split(server.ClientHellos[0]);
        var versions = extensions.Single(x => x.Item1 == 43).Item2;
        var tls12Suites = suites.Where(s => ((ushort)s & 0xFF00) == 0xC000 || (ushort)s == 0xCCA8 || (ushort)s == 0xCCA9).ToList();
        var extendedMasterSecret = extensions.Any(x => x.Item1 == 23);
        if (resumeOnly)
        {
            Assert.Equal(new byte[] { 2, 0x03, 0x04 }, versions);
            Assert.Empty(tls12Suites);
            Assert.False(extendedMasterSecret);
        }
        else
        {
            Assert.Equal(new byte[] { 4, 0x03, 0x04, 0x03, 0x03 }, versions);
            Assert.NotEmpty(tls12Suites);
            Assert.True(extendedMasterSecret);
        }
    }

    /// <summary>§4.1.2: a HelloRetryRequest that names no group (a cookie alone) leaves the key share as it was.</summary>
    [Fact]
    public async Task CookieOnlyHelloRetryRequest_GetsTheSameKeyShareAgain()
    {
        var server = new ChoosingServer(Psk) { RetryCookie = [7, 7, 7, 7] };

        await HandshakeAsync(server, Options(ticket: null));

        Assert.Equal(2, server.ClientHellos.Count);
        var first = ClientHelloParts.Split(server.ClientHellos[0]).Extensions.Single(x => x.Item1 == 51).Item2;
        var second = ClientHelloParts.Split(server.ClientHellos[1]).Extensions;
        Assert.Equal("000407070707", Convert.ToHexString(second.Single(x => x.Item1 == 44).Item2));
        Assert.Equal(Convert.ToHexString(first), Convert.ToHexString(second.Single(x => x.Item1 == 51).Item2));
    }
}

/// <summary>
/// A TLS 1.3 server played by hand: it answers the engine's ClientHello with a ServerHello of the test's
/// choosing (suite, PSK, x25519 share) and EncryptedExtensions (ALPN, early_data) under the handshake key
/// that follows, or with a HelloRetryRequest carrying only a cookie; then the stream ends. Keys come from
/// <see cref="TestKeySchedule"/>.
/// </summary>
internal sealed class ChoosingServer(byte[] psk) : DuplexTestStream
{
    private static readonly byte[] HelloRetryRandom = Convert.FromHexString("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C");
    private readonly MemoryStream _fromClient = new();
    private byte[] _toClient = [];
    private int _read;

    public CipherSuite Suite { get; init; } = CipherSuite.Aes128GcmSha256;

    /// <summary>Selects the client's first (only) PSK.</summary>
    public bool SelectPsk { get; init; }

    /// <summary>Answers the client's x25519 share with one of its own.</summary>
    public bool KeyShare { get; init; } = true;

    public string? Alpn { get; init; }

    public bool AcceptEarlyData { get; init; }

    /// <summary>When set, the first ClientHello is answered with a HelloRetryRequest carrying this cookie and no key_share.</summary>
    public byte[]? RetryCookie { get; init; }

    /// <summary>The ClientHello messages (without record header) the engine wrote.</summary>
    public List<byte[]> ClientHellos { get; } = new();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = Math.Min(buffer.Length, _toClient.Length - _read);
        _toClient.AsSpan(_read, n).CopyTo(buffer.Span);
        _read += n;
        return ValueTask.FromResult(n);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        _fromClient.Write(buffer.Span);
        // Plaintext handshake records are ClientHellos; what the client protects comes as application data.
        var hellos = TraceServer.Records(_fromClient.ToArray()).Where(r => r[0] == 0x16).Select(r => r[5..]).ToList();
        for (var i = ClientHellos.Count; i < hellos.Count; i++)
        {
            ClientHellos.Add(hellos[i]);
            byte[] answer = RetryCookie is not null && i == 0 ? Retry(hellos[i]) : RetryCookie is null ? Answer(hellos[i]) : [];
            _toClient = [.. _toClient.AsSpan(_read), .. answer];
            _read = 0;
        }
        return ValueTask.CompletedTask;
    }

    private byte[] Retry(byte[] hello) =>
        Record(ServerHello(HelloRetryRandom, hello, [(43, [3, 4]), (44, [.. U16(RetryCookie!.Length), .. RetryCookie])]));

    private byte[] Answer(byte[] hello)
    {
        List<(ushort, byte[])> extensions = [(43, [3, 4])];
        byte[] shared = [];
        if (KeyShare)
        {
            using var key = Key.Create(KeyAgreementAlgorithm.X25519, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
            shared = TestKeySchedule.X25519(key.Export(KeyBlobFormat.RawPrivateKey), TraceServer.ClientKeyShare(hello));
            extensions.Add((51, [0, 29, 0, 32, .. key.PublicKey.Export(KeyBlobFormat.RawPublicKey)]));
        }
        if (SelectPsk) extensions.Add((41, [0, 0]));
        var serverHello = ServerHello(RandomNumberGenerator.GetBytes(32), hello, extensions);

        var early = TestKeySchedule.Extract([], SelectPsk ? psk : []);
        var handshake = TestKeySchedule.Extract(TestKeySchedule.Derived(early), shared);
        var serverSecret = TestKeySchedule.DeriveSecret(handshake, "s hs traffic", TestKeySchedule.Hash(hello, serverHello));
        List<(ushort, byte[])> encrypted = [];
        if (Alpn is not null) encrypted.Add((16, [.. U16(Alpn.Length + 1), (byte)Alpn.Length, .. System.Text.Encoding.ASCII.GetBytes(Alpn)]));
        if (AcceptEarlyData) encrypted.Add((42, []));
        var encryptedExtensions = Message(8, Block(encrypted));
        using var protection = new RecordProtection(CipherSuiteInfo.Get(Suite), serverSecret);
        var sealedRecord = new byte[RecordProtection.HeaderLength + RecordProtection.MaxCiphertext];
        var length = protection.Seal(ContentType.Handshake, encryptedExtensions, 0, sealedRecord);
        return [.. Record(serverHello), .. sealedRecord.AsSpan(0, length)];
    }

    /// <summary>A ServerHello echoing the ClientHello's legacy_session_id.</summary>
    private byte[] ServerHello(byte[] random, byte[] hello, List<(ushort, byte[])> extensions)
    {
        var sessionId = hello[(4 + 2 + 32)..(4 + 2 + 32 + 1 + hello[4 + 2 + 32])];
        return Message(2, [3, 3, .. random, .. sessionId, .. U16((int)Suite), 0, .. Block(extensions)]);
    }

    private static byte[] Record(byte[] message) => [0x16, 3, 3, .. U16(message.Length), .. message];

    private static byte[] Message(byte type, byte[] body) => [type, (byte)(body.Length >> 16), (byte)(body.Length >> 8), (byte)body.Length, .. body];

    private static byte[] Block(List<(ushort Type, byte[] Data)> extensions)
    {
        var body = extensions.SelectMany(e => (byte[])[.. U16(e.Type), .. U16(e.Data.Length), .. e.Data]).ToArray();
        return [.. U16(body.Length), .. body];
    }

    private static byte[] U16(int value) => [(byte)(value >> 8), (byte)value];
}
