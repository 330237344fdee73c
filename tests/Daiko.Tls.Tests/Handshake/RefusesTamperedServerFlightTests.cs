using Daiko.Tls.Tests.Rfc8448;

namespace Daiko.Tls.Tests.Handshake;

/// <summary>
/// The RFC 8448 §3 server flight, as the trace's server answers the engine's ClientHello, altered
/// before or after encryption: every alteration must fail the handshake with the right error, and the
/// alert the client put on the wire (decrypted from its last record) must say the same.
/// </summary>
public sealed class RefusesTamperedServerFlightTests
{
    private static readonly Rfc8448Trace Trace = SimpleHandshakeTraceTests.Trace;

    private static async Task<(TlsException Error, byte? WireAlert)> HandshakeWithAsync(Func<byte[], byte[]> alterFlight, Func<byte[], byte[]>? alterRecords = null)
        => await HandshakeWithAsync(new ServerAlterations { WholeFlight = alterFlight, Records = alterRecords });

    private static async Task<(TlsException Error, byte? WireAlert)> HandshakeWithAsync(ServerAlterations alterations)
    {
        var server = new TraceServer(Trace, alterations);
        var options = SimpleHandshakeTraceTests.EngineOptions() with { HandshakeTimeout = TimeSpan.FromSeconds(20) };
        var e = await Assert.ThrowsAsync<TlsException>(() => TlsClient.ConnectAsync(server, options, CancellationToken.None));
        Assert.NotEqual(TlsError.Timeout, e.Error);
        return (e, server.LastClientAlert());
    }

    private static async Task RefusedWithAsync(AlertDescription alert, Func<byte[], byte[]> alterFlight, Func<byte[], byte[]>? alterRecords = null)
    {
        var (e, wire) = await HandshakeWithAsync(alterFlight, alterRecords);
        Assert.Equal(alert, e.Alert);
        Assert.True(wire.HasValue, "the client put no alert on the wire");
        Assert.Equal((byte)alert, wire.Value);
    }

    /// <summary>Offsets of each message inside the flight: EE, Certificate, CertificateVerify, Finished.</summary>
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
    public async Task Handshake_WithTheUnalteredFlight_CompletesAndSendsFinishedWithoutAlert()
    {
        var server = new TraceServer(Trace, new ServerAlterations { WholeFlight = f => f, Records = r => r });
        await using (var connection = await TlsClient.ConnectAsync(server, SimpleHandshakeTraceTests.EngineOptions(), CancellationToken.None))
        {
            Assert.Equal(CipherSuite.Aes128GcmSha256, connection.CipherSuite);
        }
        var records = server.ClientRecords();
        Assert.Equal(Convert.ToHexString(server.ExpectedClientFinished), Convert.ToHexString(server.ClientHandshakeMessages.Single()));
        Assert.Equal("0100", Convert.ToHexString(records.Last(r => r.Type == 0x15).Content)); // only close_notify
        Assert.Single(records, r => r.Type == 0x15);
    }

    [Fact]
    public async Task Refuses_TamperedFinished_WithDecryptError()
    {
        await RefusedWithAsync(AlertDescription.DecryptError, f =>
        {
            var finished = Messages(f).Single(m => m.Type == 20);
            f[finished.Offset + 4] ^= 0x01;
            return f;
        });
    }

    [Fact]
    public async Task Refuses_ForgedCertificateVerify_UnderAMatchingFinished_WithDecryptError()
    {
        // The forger computes Finished over what it sends: only the signature check can refuse this.
        var (e, wire) = await HandshakeWithAsync(new ServerAlterations
        {
            SignedFlight = f =>
            {
                var verify = Messages(f).Single(m => m.Type == 15);
                f[verify.Offset + verify.Length - 1] ^= 0x80;
                return f;
            },
        });
        Assert.Equal(TlsError.VerificationFailed, e.Error);
        Assert.Equal(AlertDescription.DecryptError, e.Alert);
        Assert.Equal((byte)AlertDescription.DecryptError, wire);
    }

    [Theory]
    [InlineData(8, "EncryptedExtensions")]
    [InlineData(11, "Certificate")]
    [InlineData(15, "CertificateVerify")]
    public async Task Refuses_AMissingMessage_WithUnexpectedMessage(byte dropped, string name)
    {
        var (e, wire) = await HandshakeWithAsync(f =>
        {
            var m = Messages(f).Single(x => x.Type == dropped);
            return f[..m.Offset].Concat(f[(m.Offset + m.Length)..]).ToArray();
        });
        Assert.True(e.Alert == AlertDescription.UnexpectedMessage, $"dropping {name} gave {e.Alert}");
        Assert.Equal((byte)AlertDescription.UnexpectedMessage, wire);
    }

    [Fact]
    public async Task Refuses_ADuplicatedMessage_WithUnexpectedMessage()
    {
        await RefusedWithAsync(AlertDescription.UnexpectedMessage, f =>
        {
            var ee = Messages(f).Single(x => x.Type == 8);
            return f[..(ee.Offset + ee.Length)].Concat(f[ee.Offset..]).ToArray();
        });
    }

    [Fact]
    public async Task Refuses_ACorruptedRecord_WithBadRecordMac()
    {
        await RefusedWithAsync(AlertDescription.BadRecordMac, f => f, records =>
        {
            records[^5] ^= 0x01;
            return records;
        });
    }

    [Fact]
    public async Task Refuses_AnOversizedRecord_WithRecordOverflow()
    {
        await RefusedWithAsync(AlertDescription.RecordOverflow, f => f, records =>
        {
            // Rewrite the second record's length to 2^14 + 257.
            var second = 5 + ((records[3] << 8) | records[4]);
            records[second + 3] = 0x41;
            records[second + 4] = 0x01;
            return records.Concat(new byte[0x4101]).ToArray();
        });
    }

    [Fact]
    public async Task Refuses_ATruncatedStream_AsTransportClosed()
    {
        var (e, _) = await HandshakeWithAsync(f => f, records => records[..^10]);
        Assert.Equal(TlsError.TransportClosed, e.Error);
    }

    [Fact]
    public async Task Refuses_AMalformedEncryptedExtensions_WithDecodeError()
    {
        await RefusedWithAsync(AlertDescription.DecodeError, f =>
        {
            var ee = Messages(f).Single(x => x.Type == 8);
            f[ee.Offset + 5] ^= 0x7f; // extensions length no longer matches
            return f;
        });
    }

    /// <summary>A peer that accepts the ClientHello and then says nothing, never closing.</summary>
    private sealed class StalledPeer : DuplexTestStream
    {
        public int Written { get; private set; }


        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return 0;
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Written += buffer.Length;
            return ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task Refuses_AStalledPeer_WhenTheHandshakeTimeoutPasses()
    {
        var peer = new StalledPeer();
        var options = SimpleHandshakeTraceTests.EngineOptions() with { HandshakeTimeout = TimeSpan.FromSeconds(1) };
        var handshake = TlsClient.ConnectAsync(peer, options, CancellationToken.None);
        // Generous outer bound: the engine's own timeout must end the wait, not this one.
        var finished = await Task.WhenAny(handshake, Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.Same(handshake, finished);
        var e = await Assert.ThrowsAsync<TlsException>(() => handshake);
        Assert.Equal(TlsError.Timeout, e.Error);
        Assert.True(peer.Written > 0, "the client never sent its ClientHello");
    }
}
