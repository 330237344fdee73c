using Daiko.Tls;
using Daiko.Tls.Crypto;
using Daiko.Tls.Handshake;
using Daiko.Tls.KeySchedule;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>
/// RFC 8448 §5: the server asks for a P-256 share with a HelloRetryRequest that carries a cookie. The
/// engine answers the trace's HelloRetryRequest with its own second ClientHello (the RFC's client also
/// pads it to 512 octets and sends extensions the engine does not), so the second ClientHello is
/// checked for what RFC 8446 §4.1.2 requires, and the derivations after it on the trace's transcript.
/// </summary>
public sealed class HelloRetryRequestTraceTests
{
    private static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("5.  HelloRetryRequest");

    /// <summary>Plays the trace's HelloRetryRequest after the first ClientHello, then ends the stream.</summary>
    private sealed class RetryingServer : DuplexTestStream
    {
        private readonly MemoryStream _toClient = new();
        private readonly MemoryStream _fromClient = new();
        private bool _answered;

        public byte[] Written => _fromClient.ToArray();

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(_toClient.Read(buffer.Span));

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            _fromClient.Write(buffer.Span);
            if (!_answered && TraceServer.Records(Written).Any())
            {
                _answered = true;
                _toClient.Write(Trace.Get("{server}  send handshake record", "complete record", 0));
                _toClient.Position = 0;
            }
            return ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task SecondClientHello_EchoesTheCookieAndSendsTheTraceP256Share_WithTheSameRandom()
    {
        var server = new RetryingServer();
        var options = new TlsClientOptions
        {
            ServerName = "server",
            CertificateValidator = new AcceptTraceCertificate(),
            RandomSource = span => Trace.Get("{client}  construct a ClientHello", "ClientHello", 0).AsSpan(6, 32).CopyTo(span),
            FixedKeyShares = new Dictionary<NamedGroup, byte[]>
            {
                [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key"),
                [NamedGroup.Secp256r1] = Trace.Get("{client}  create an ephemeral P-256", "private key"),
            },
            Time = new FixedTime(),
        };

        var e = await Assert.ThrowsAsync<TlsException>(() => TlsClient.ConnectAsync(server, options, CancellationToken.None));
        Assert.Equal(TlsError.TransportClosed, e.Error); // the script ends after the retry

        var hellos = TraceServer.Records(server.Written).Where(r => r[0] == 0x16).Select(r => r[5..]).ToList();
        Assert.Equal(2, hellos.Count);
        var first = ClientHelloParts.Split(hellos[0]);
        var second = ClientHelloParts.Split(hellos[1]);
        var rfcFirst = ClientHelloParts.Split(Trace.Get("{client}  construct a ClientHello", "ClientHello", 0));
        var retry = ClientHelloParts.SplitServerHello(Trace.Get("{server}  construct a ServerHello", "ServerHello", 0));

        Assert.Equal(Convert.ToHexString(rfcFirst.Random), Convert.ToHexString(first.Random));
        Assert.Equal(Convert.ToHexString(first.Random), Convert.ToHexString(second.Random));
        Assert.Equal(Convert.ToHexString(Trace.Get("{client}  create an ephemeral x25519", "public key")), Convert.ToHexString(TraceServer.ClientKeyShare(hellos[0])));
        // cookie: the HelloRetryRequest's extension data, sent back unchanged.
        Assert.Equal(
            Convert.ToHexString(retry.Extensions.Single(x => x.Item1 == 44).Item2),
            Convert.ToHexString(second.Extensions.Single(x => x.Item1 == 44).Item2));
        Assert.DoesNotContain(first.Extensions, x => x.Item1 == 44);
        // key_share: exactly one share, for the group the retry named (P-256), the trace's public key.
        var share = second.Extensions.Single(x => x.Item1 == 51).Item2;
        var p256 = Trace.Get("{client}  create an ephemeral P-256", "public key");
        Assert.Equal("0017", Convert.ToHexString(share.AsSpan(2, 2)));
        Assert.Equal(2 + 2 + 2 + p256.Length, share.Length);
        Assert.Equal(Convert.ToHexString(p256), Convert.ToHexString(share[6..]));
        // Apart from cookie and key_share, the second hello repeats the first (RFC 8446 §4.1.2).
        Assert.Equal(
            first.Extensions.Where(x => x.Item1 != 51).Select(x => Convert.ToHexString(x.Item2)),
            second.Extensions.Where(x => x.Item1 is not 51 and not 44).Select(x => Convert.ToHexString(x.Item2)));
    }

    [Fact]
    public void KeySchedule_AfterTheRetry_HashesClientHello1AsMessageHash_AndDerivesTheTraceSecretsAndFinished()
    {
        var suite = CipherSuiteInfo.Aes128Gcm;
        var transcript = new Transcript();
        transcript.Add(Trace.Get("{client}  construct a ClientHello", "ClientHello", 0));
        transcript.ReplaceFirstWithMessageHash(suite);
        transcript.Add(Trace.Get("{server}  construct a ServerHello", "ServerHello", 0));
        transcript.Add(Trace.Get("{client}  construct a ClientHello", "ClientHello", 1));
        transcript.Add(Trace.Get("{server}  construct a ServerHello", "ServerHello", 1));

        using var share = KeyShare.Create(NamedGroup.Secp256r1, Trace.Get("{client}  create an ephemeral P-256", "private key"));
        Assert.Equal(Convert.ToHexString(Trace.Get("{client}  create an ephemeral P-256", "public key")), Convert.ToHexString(share.PublicKey));
        var shared = share.Agree(Trace.Get("{server}  create an ephemeral P-256", "public key"));
        Expect("{server}  extract secret \"handshake\"", "IKM", shared);
        using var handshake = new EarlySecret(suite, ReadOnlySpan<byte>.Empty).Next(shared);
        Expect("{server}  extract secret \"handshake\"", "secret", handshake.Value.ToArray());
        var clientHandshake = handshake.ClientTrafficSecret(transcript.Hash(suite));
        var serverHandshake = handshake.ServerTrafficSecret(transcript.Hash(suite));
        Expect("{server}  derive secret \"tls13 c hs traffic\"", "expanded", clientHandshake);
        Expect("{server}  derive secret \"tls13 s hs traffic\"", "expanded", serverHandshake);
        Expect("{server}  derive write traffic keys for handshake data", "key expanded", TrafficSecrets.Keys(suite, serverHandshake).Key);

        var flight = Trace.Get("{server}  send handshake record", "payload", 2);
        var serverFinished = Trace.Get("{server}  construct a Finished", "Finished");
        transcript.Add(flight[..^serverFinished.Length]);
        Expect("{server}  calculate finished", "finished", Hkdf13.FinishedMac(suite, serverHandshake, transcript.Hash(suite)));
        transcript.Add(serverFinished);
        using var master = handshake.Next();
        Expect("{server}  extract secret \"master\"", "secret", master.Value.ToArray());
        Expect("{server}  derive secret \"tls13 c ap traffic\"", "expanded", master.ClientApplicationTrafficSecret(transcript.Hash(suite)));
        Expect("{server}  derive secret \"tls13 s ap traffic\"", "expanded", master.ServerApplicationTrafficSecret(transcript.Hash(suite)));
        Expect("{client}  calculate finished", "finished", Hkdf13.FinishedMac(suite, clientHandshake, transcript.Hash(suite)));
        transcript.Add(Trace.Get("{client}  construct a Finished", "Finished"));
        Expect("{client}  derive secret \"tls13 res master\"", "expanded", master.ResumptionMasterSecret(transcript.Hash(suite)));
    }

    private static void Expect(string step, string label, byte[] actual) =>
        Assert.True(Convert.ToHexString(Trace.Get(step, label)) == Convert.ToHexString(actual),
            $"{step} / {label}: expected {Convert.ToHexString(Trace.Get(step, label))}, engine gave {Convert.ToHexString(actual)}");
}
