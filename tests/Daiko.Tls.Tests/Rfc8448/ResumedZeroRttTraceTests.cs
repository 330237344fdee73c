using Daiko.Tls;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>
/// RFC 8448 §4: resumption with the §3 ticket, psk_dhe_ke and 0-RTT data. The engine writes its own
/// ClientHello (the RFC's client adds renegotiation_info, more groups and schemes,
/// and padding), so its PSK binder and early-data keys cover other bytes than the trace's: the test
/// checks the engine's own binder and early data against a second key schedule, and the engine's
/// derivations against the trace's values on the trace's own ClientHello.
/// </summary>
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

    /// <summary>The identities part of the trace's pre_shared_key extension and the age in it.</summary>
    private static (byte[] Identities, uint TicketAgeMs) TraceIdentities()
    {
        var psk = ClientHelloParts.Split(Trace.Get("{client}  send handshake record", "payload", 0)).Extensions.Single(e => e.Item1 == 41).Item2;
        var identitiesLength = (psk[0] << 8) | psk[1];
        var identities = psk[..(2 + identitiesLength)];
        var obfuscated = (uint)((identities[^4] << 24) | (identities[^3] << 16) | (identities[^2] << 8) | identities[^1]);
        return (identities, unchecked(obfuscated - TicketFromSection3().AgeAdd));
    }

    [Fact]
    public async Task ResumingClientHello_OffersTheTraceTicketWithItsOwnAgeAndBinder_AndSealsTheTraceEarlyData()
    {
        var (identities, ageMs) = TraceIdentities();
        var ticket = TicketFromSection3();
        var transport = new ScriptedTransport([]);
        var options = new TlsClientOptions
        {
            ServerName = "server",
            CipherSuites = [CipherSuite.Aes128GcmSha256, CipherSuite.ChaCha20Poly1305Sha256, CipherSuite.Aes256GcmSha384],
            CertificateValidator = new AcceptTraceCertificate(),
            ResumptionTicket = ticket,
            PskModes = [PskKeyExchangeMode.PskDheKe],
            EarlyData = Trace.Get("{client}  send application_data record", "payload", 0),
            RandomSource = span => Trace.Get("{client}  send handshake record", "payload", 0).AsSpan(6, 32).CopyTo(span),
            FixedKeyShares = new Dictionary<NamedGroup, byte[]> { [NamedGroup.X25519] = Trace.Get("{client}  create an ephemeral x25519", "private key") },
            // The trace's client offered the ticket this long after receiving it; the engine obfuscates the age itself.
            Time = new FixedTime { Now = ticket.ReceivedAt.AddMilliseconds(ageMs) },
        };
        await Assert.ThrowsAsync<TlsException>(() => TlsClient.ConnectAsync(transport, options, CancellationToken.None));

        var records = TraceServer.Records(transport.Written).ToList();
        var hello = records[0][5..];
        var parts = ClientHelloParts.Split(hello);
        Assert.Equal(41, parts.Extensions[^1].Item1); // pre_shared_key last
        Assert.Contains(parts.Extensions, e => e.Item1 == 42); // early_data
        Assert.Equal("0101", Convert.ToHexString(parts.Extensions.Single(e => e.Item1 == 45).Item2));
        Assert.Equal(Convert.ToHexString(Trace.Get("{client}  create an ephemeral x25519", "public key")), Convert.ToHexString(TraceServer.ClientKeyShare(hello)));
        var psk = parts.Extensions[^1].Item2;
        Assert.Equal(Convert.ToHexString(identities), Convert.ToHexString(psk[..identities.Length]));

        // The binder over the engine's own truncated ClientHello, computed again on the test side.
        var early = TestKeySchedule.Extract([], ticket.Psk);
        Assert.Equal(Convert.ToHexString(Trace.Get("{client}  extract secret \"early\"", "secret")), Convert.ToHexString(early));
        var binderKey = TestKeySchedule.DeriveSecret(early, "res binder", TestKeySchedule.Hash());
        Assert.Equal("002120", Convert.ToHexString(hello.AsSpan(hello.Length - 35, 3))); // one binder of 32 octets, last
        var truncated = hello[..^35];
        Assert.Equal(Convert.ToHexString(TestKeySchedule.FinishedMac(binderKey, TestKeySchedule.Hash(truncated))), Convert.ToHexString(hello[^32..]));

        // The 0-RTT record opens under the early traffic secret of the engine's ClientHello.
        var earlyTraffic = TestKeySchedule.DeriveSecret(early, "c e traffic", TestKeySchedule.Hash(hello));
        var (type, content) = new TestRecordCipher(earlyTraffic).Open(records[1]);
        Assert.Equal(0x17, type);
        Assert.Equal(Convert.ToHexString(Trace.Get("{client}  send application_data record", "payload", 0)), Convert.ToHexString(content));
    }

    [Fact]
    public void KeySchedule_OnTheTraceClientHello_DerivesTheTraceBinderEarlyAndHandshakeSecrets()
    {
        var suite = CipherSuiteInfo.Aes128Gcm;
        var ticket = TicketFromSection3();
        var hello = Trace.Get("{client}  send handshake record", "payload", 0);
        var prefix = Trace.Get("{client}  calculate PSK binder", "ClientHello prefix");
        Assert.Equal(Convert.ToHexString(prefix), Convert.ToHexString(hello[..prefix.Length]));

        var early = new EarlySecret(suite, ticket.Psk);
        Expect("{client}  extract secret \"early\"", "secret", early.Value.ToArray());
        Expect("{client}  calculate PSK binder", "finished", Hkdf13.FinishedMac(suite, early.ResumptionBinderKey(), suite.HashData(prefix)));
        Assert.Equal(Convert.ToHexString(Trace.Get("{client}  calculate PSK binder", "finished")), Convert.ToHexString(hello[^32..]));
        var earlyTraffic = early.ClientEarlyTrafficSecret(suite.HashData(hello));
        Expect("{client}  derive secret \"tls13 c e traffic\"", "expanded", earlyTraffic);
        Expect("{client}  derive write traffic keys for early application data", "key expanded", TrafficSecrets.Keys(suite, earlyTraffic).Key);
        Expect("{client}  derive write traffic keys for early application data", "iv expanded", TrafficSecrets.Keys(suite, earlyTraffic).Iv);

        using var share = KeyShare.Create(NamedGroup.X25519, Trace.Get("{client}  create an ephemeral x25519", "private key"));
        var shared = share.Agree(Trace.Get("{server}  create an ephemeral x25519", "public key"));
        Expect("{server}  extract secret \"handshake\"", "IKM", shared);
        using var handshake = early.Next(shared);
        Expect("{server}  extract secret \"handshake\"", "secret", handshake.Value.ToArray());
        var messages = new List<byte[]> { hello, Trace.Get("{server}  construct a ServerHello", "ServerHello") };
        var helloHash = SimpleHandshakeTraceTests.Hash(suite, messages);
        var serverHandshake = handshake.ServerTrafficSecret(helloHash);
        var clientHandshake = handshake.ClientTrafficSecret(helloHash);
        Expect("{server}  derive secret \"tls13 c hs traffic\"", "expanded", clientHandshake);
        Expect("{server}  derive secret \"tls13 s hs traffic\"", "expanded", serverHandshake);

        var flight = Trace.Get("{server}  send handshake record", "payload", 1);
        var serverFinished = Trace.Get("{server}  construct a Finished", "Finished");
        messages.Add(flight[..^serverFinished.Length]);
        Expect("{server}  calculate finished", "finished", Hkdf13.FinishedMac(suite, serverHandshake, SimpleHandshakeTraceTests.Hash(suite, messages)));
        messages.Add(serverFinished);
        using var master = handshake.Next();
        Expect("{server}  extract secret \"master\"", "secret", master.Value.ToArray());
        var finishedHash = SimpleHandshakeTraceTests.Hash(suite, messages);
        Expect("{server}  derive secret \"tls13 c ap traffic\"", "expanded", master.ClientApplicationTrafficSecret(finishedHash));
        Expect("{server}  derive secret \"tls13 s ap traffic\"", "expanded", master.ServerApplicationTrafficSecret(finishedHash));
        // The client's Finished follows its EndOfEarlyData (RFC 8446 §4.5), which enters the transcript.
        messages.Add(Trace.Get("{client}  construct an EndOfEarlyData", "EndOfEarlyData"));
        Expect("{client}  calculate finished", "finished", Hkdf13.FinishedMac(suite, clientHandshake, SimpleHandshakeTraceTests.Hash(suite, messages)));
        messages.Add(Trace.Get("{client}  construct a Finished", "Finished"));
        Expect("{client}  derive secret \"tls13 res master\"", "expanded", master.ResumptionMasterSecret(SimpleHandshakeTraceTests.Hash(suite, messages)));
    }

    private static void Expect(string step, string label, byte[] actual) =>
        Assert.True(Convert.ToHexString(Trace.Get(step, label)) == Convert.ToHexString(actual),
            $"{step} / {label}: expected {Convert.ToHexString(Trace.Get(step, label))}, engine gave {Convert.ToHexString(actual)}");
}
