using Daiko.Tls;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>RFC 8448 §4: resumption with the §3 ticket, psk_dhe_ke and 0-RTT data, replayed byte-exactly.</summary>
public sealed class ResumedZeroRttTraceTests
{
    private static readonly Rfc8448Trace First = Rfc8448Trace.Section("3.  Simple 1-RTT Handshake");
    private static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("4.  Resumed 0-RTT Handshake");

    internal static SessionTicket TicketFromSection3()
    {
        var nst = First.Get("{server}  construct a NewSessionTicket", "NewSessionTicket");
        // NewSessionTicket: type(1) len(3) lifetime(4) age_add(4) nonce<1> ticket<2> extensions<2>
        var lifetime = (uint)((nst[4] << 24) | (nst[5] << 16) | (nst[6] << 8) | nst[7]);
        var ageAdd = (uint)((nst[8] << 24) | (nst[9] << 16) | (nst[10] << 8) | nst[11]);
        var nonceLength = nst[12];
        var nonce = nst[13..(13 + nonceLength)];
        var p = 13 + nonceLength;
        var ticketLength = (nst[p] << 8) | nst[p + 1];
        var identity = nst[(p + 2)..(p + 2 + ticketLength)];
        var psk = First.Get("{server}  generate resumption secret", "expanded");
        return new SessionTicket(identity, psk, CipherSuite.Aes128GcmSha256, "server", null, lifetime, ageAdd, 0x400,
            new FixedTime().Now, nonce);
    }

    [Fact]
    public async Task Replay_BinderEarlyDataAndFinished_MatchTheTrace()
    {
        var clientHello = Trace.Get("{client}  send handshake record", "payload", 0);
        var (random, suites, extensions) = ClientHelloParts.Split(clientHello);
        // Zero the recorded binder: the engine must compute it.
        var psk = extensions.FindIndex(e => e.Item1 == 41);
        var pskData = extensions[psk].Item2.ToArray();
        pskData.AsSpan(pskData.Length - 32).Clear();
        extensions[psk] = (41, pskData);
        var serverRecords = Trace.All("{server}  send handshake record", "complete record")
            .Concat(Trace.All("{server}  send application_data record", "complete record"))
            .Concat(Trace.All("{server}  send alert record", "complete record"))
            .SelectMany(b => b).ToArray();
        var transport = new ScriptedTransport(serverRecords);
        var secrets = new Dictionary<string, byte[]>();
        var earlyData = Trace.Get("{client}  send application_data record", "payload", 0);
        var options = new TlsClientOptions
        {
            ServerName = "server",
            CipherSuites = suites,
            CertificateValidator = new AcceptTraceCertificate(),
            ResumptionTicket = TicketFromSection3(),
            PskModes = [PskKeyExchangeMode.PskDheKe],
            EarlyData = earlyData,
            RandomSource = span => random.CopyTo(span),
            FixedKeyShares = new Dictionary<NamedGroup, byte[]> { [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key") },
            ClientHelloExtensionsOverride = _ => extensions,
            KeyLog = (label, secret) => secrets[label] = secret.ToArray(),
            Time = new FixedTime(),
        };

        await using var connection = await TlsClient.ConnectAsync(transport, options, CancellationToken.None);
        Assert.True(connection.Resumed);
        Assert.True(connection.EarlyDataAccepted);
        Assert.Equal(PskKeyExchangeMode.PskDheKe, connection.KeyExchange);
        await connection.WriteAsync(Trace.Get("{client}  send application_data record", "payload", 1));
        var reply = new byte[50];
        await connection.ReadExactlyAsync(reply);
        await connection.CloseAsync(CancellationToken.None);

        Assert.Equal(Convert.ToHexString(Trace.Get("{client}  derive secret \"tls13 c e traffic\"", "expanded")), Convert.ToHexString(secrets["c e traffic"]));
        Assert.Equal(Convert.ToHexString(Trace.Get("{server}  derive secret \"tls13 c hs traffic\"", "expanded")), Convert.ToHexString(secrets["c hs traffic"]));
        var expectedClientBytes = Trace.All("{client}  send handshake record", "complete record").Take(1)
            .Concat(Trace.All("{client}  send application_data record", "complete record").Take(1))
            .Concat(Trace.All("{client}  send handshake record", "complete record").Skip(1))
            .Concat(Trace.All("{client}  send application_data record", "complete record").Skip(1))
            .Concat(Trace.All("{client}  send alert record", "complete record"))
            .SelectMany(b => b).ToArray();
        Assert.Equal(Convert.ToHexString(expectedClientBytes), Convert.ToHexString(transport.Written));
    }
}
