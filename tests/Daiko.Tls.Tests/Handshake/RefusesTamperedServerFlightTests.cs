using Daiko.Tls.KeySchedule;
using Daiko.Tls.Records;
using Daiko.Tls.Tests.Rfc8448;

namespace Daiko.Tls.Tests.Handshake;

/// <summary>
/// The RFC 8448 §3 server flight, decrypted with the trace's keys, altered, and re-encrypted: every
/// alteration must fail the handshake with the right alert and without hanging.
/// </summary>
public sealed class RefusesTamperedServerFlightTests
{
    private static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("3.  Simple 1-RTT Handshake");

    private static async Task<TlsException> HandshakeWithAsync(Func<byte[], byte[]> alterEncryptedFlight, Func<byte[], byte[]>? alterRecords = null)
    {
        var clientHello = Trace.Get("{client}  construct a ClientHello", "ClientHello");
        var (random, suites, extensions) = ClientHelloParts.Split(clientHello);
        var records = Trace.All("{server}  send handshake record", "complete record").ToList();
        var serverHandshakeSecret = Trace.Get("{server}  derive secret \"tls13 s hs traffic\"", "expanded");
        var flight = Trace.Get("{server}  send handshake record", "payload", 1);
        var altered = alterEncryptedFlight(flight.ToArray());
        using var protection = new RecordProtection(CipherSuiteInfo.Aes128Gcm, serverHandshakeSecret.ToArray());
        var sealedRecord = new byte[altered.Length + 64];
        var length = protection.Seal(ContentType.Handshake, altered, 0, sealedRecord);
        var server = records[0].Concat(sealedRecord[..length]).ToArray();
        if (alterRecords is not null) server = alterRecords(server);
        var transport = new ScriptedTransport(server);
        var options = new TlsClientOptions
        {
            ServerName = "server",
            CipherSuites = suites,
            CertificateValidator = new AcceptTraceCertificate(),
            RandomSource = span => random.CopyTo(span),
            FixedKeyShares = new Dictionary<NamedGroup, byte[]> { [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key") },
            ClientHelloExtensionsOverride = _ => extensions,
            HandshakeTimeout = TimeSpan.FromSeconds(5),
            Time = new FixedTime(),
        };
        var e = await Assert.ThrowsAsync<TlsException>(() => TlsClient.ConnectAsync(transport, options, CancellationToken.None));
        // The alert the client sent is the last record it wrote (plaintext alerts are not used after ServerHello).
        Assert.True(transport.Written.Length > 0);
        return e;
    }

    /// <summary>Offsets of each message inside the §3 encrypted flight: EE, Certificate, CertificateVerify, Finished.</summary>
    private static List<(byte Type, int Offset, int Length)> Messages(byte[] flight)
    {
        var list = new List<(byte, int, int)>();
        for (var p = 0; p < flight.Length;)
        {
            var len = (flight[p + 1] << 16) | (flight[p + 2] << 8) | flight[p + 3];
            list.Add((flight[p], p, 4 + len));
            p += 4 + len;
        }
        return list;
    }

    [Fact]
    public async Task Baseline_UnalteredFlight_IsAccepted()
    {
        var clientHello = Trace.Get("{client}  construct a ClientHello", "ClientHello");
        Assert.NotEmpty(clientHello);
        // Re-sealing the untouched flight must give back the recorded record, proving the harness.
        var flight = Trace.Get("{server}  send handshake record", "payload", 1);
        using var protection = new RecordProtection(CipherSuiteInfo.Aes128Gcm, Trace.Get("{server}  derive secret \"tls13 s hs traffic\"", "expanded").ToArray());
        var sealedRecord = new byte[flight.Length + 64];
        var length = protection.Seal(ContentType.Handshake, flight, 0, sealedRecord);
        Assert.Equal(Convert.ToHexString(Trace.Get("{server}  send handshake record", "complete record", 1)), Convert.ToHexString(sealedRecord[..length]));
        await Task.CompletedTask;
    }

    [Fact]
    public async Task Refuses_TamperedFinished_WithDecryptError()
    {
        var e = await HandshakeWithAsync(f =>
        {
            var finished = Messages(f).Single(m => m.Type == 20);
            f[finished.Offset + 4] ^= 0x01;
            return f;
        });
        Assert.Equal(TlsError.VerificationFailed, e.Error);
        Assert.Equal(AlertDescription.DecryptError, e.Alert);
    }

    [Fact]
    public async Task Refuses_ForgedCertificateVerify_WithDecryptError()
    {
        var e = await HandshakeWithAsync(f =>
        {
            var verify = Messages(f).Single(m => m.Type == 15);
            f[verify.Offset + verify.Length - 1] ^= 0x80;
            return f;
        });
        Assert.Equal(TlsError.VerificationFailed, e.Error);
        Assert.Equal(AlertDescription.DecryptError, e.Alert);
    }

    [Theory]
    [InlineData(8, "EncryptedExtensions")]
    [InlineData(11, "Certificate")]
    [InlineData(15, "CertificateVerify")]
    public async Task Refuses_AMissingMessage_WithUnexpectedMessage(byte dropped, string name)
    {
        var e = await HandshakeWithAsync(f =>
        {
            var m = Messages(f).Single(x => x.Type == dropped);
            return f[..m.Offset].Concat(f[(m.Offset + m.Length)..]).ToArray();
        });
        Assert.True(e.Alert == AlertDescription.UnexpectedMessage, $"dropping {name} gave {e.Alert}");
    }

    [Fact]
    public async Task Refuses_ADuplicatedMessage_WithUnexpectedMessage()
    {
        var e = await HandshakeWithAsync(f =>
        {
            var ee = Messages(f).Single(x => x.Type == 8);
            return f[..(ee.Offset + ee.Length)].Concat(f[ee.Offset..]).ToArray();
        });
        Assert.Equal(AlertDescription.UnexpectedMessage, e.Alert);
    }

    [Fact]
    public async Task Refuses_ACorruptedRecord_WithBadRecordMac()
    {
        var e = await HandshakeWithAsync(f => f, records =>
        {
            records[^5] ^= 0x01;
            return records;
        });
        Assert.Equal(AlertDescription.BadRecordMac, e.Alert);
    }

    [Fact]
    public async Task Refuses_AnOversizedRecord_WithRecordOverflow()
    {
        var e = await HandshakeWithAsync(f => f, records =>
        {
            // Rewrite the second record's length to 2^14 + 257.
            var second = 5 + ((records[3] << 8) | records[4]);
            records[second + 3] = 0x41;
            records[second + 4] = 0x01;
            return records.Concat(new byte[0x4101]).ToArray();
        });
        Assert.Equal(AlertDescription.RecordOverflow, e.Alert);
    }

    [Fact]
    public async Task Refuses_ATruncatedStream_WithoutHanging()
    {
        var e = await HandshakeWithAsync(f => f, records => records[..^10]);
        Assert.Equal(TlsError.TransportClosed, e.Error);
    }

    [Fact]
    public async Task Refuses_AMalformedEncryptedExtensions_WithDecodeError()
    {
        var e = await HandshakeWithAsync(f =>
        {
            var ee = Messages(f).Single(x => x.Type == 8);
            f[ee.Offset + 5] ^= 0x7f; // extensions length no longer matches
            return f;
        });
        Assert.Equal(AlertDescription.DecodeError, e.Alert);
    }
}
