using System.Buffers.Binary;
using System.Formats.Cbor;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Hostile.Tests.Peers;
using Daiko.TestSupport.Hostile;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Hostile.Tests;

[CollectionDefinition("hostile peers", DisableParallelization = true)]
public sealed class HostilePeersCollection : ICollectionFixture<HomeServeProcess>;

/// <summary>
/// Strangers and misbehaving peers against a real <c>daiko home serve</c> process, each from its own
/// loopback address (127.0.1.x) so that one test's limits never touch another's.
/// </summary>
[Collection("hostile peers")]
public sealed class HostilePeerTests(HomeServeProcess home)
{
    private static readonly TimeSpan Reply = TimeSpan.FromSeconds(30);

    private async Task<ControlPeer> DeviceAsync(string name, string from)
    {
        var certificate = await ControlPeer.EnrollAsync(home.Port, await home.NewCodeAsync(name), from);
        return await ControlPeer.ConnectAsync(home.Port, from, certificate);
    }

    [Fact]
    public async Task AStrangersCertificate_NamingAnAiaUrl_FailsTheHandshake_AndTheUrlIsNeverFetched()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var fetches = 0;
        using var stop = new CancellationTokenSource();
        var accepting = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    using var fetch = await listener.AcceptTcpClientAsync(stop.Token);
                    Interlocked.Increment(ref fetches);
                }
            }
            catch (OperationCanceledException)
            {
                // The test is over.
            }
        });
        var url = $"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/issuer.cer";
        using var stranger = StrangerCertificate(url);

        await using var peer = await ControlPeer.ConnectAsync(home.Port, "127.0.1.1", stranger);
        await peer.SendAsync(3, new CardStatusRequest());

        Assert.True(await peer.ClosedWithinAsync(TimeSpan.FromSeconds(20)), "the home server kept a connection whose certificate it did not issue");
        await Task.Delay(TimeSpan.FromSeconds(1));
        await stop.CancelAsync();
        await accepting;
        Assert.Equal(0, Volatile.Read(ref fetches));
        Assert.Contains("control handshake failed", home.Server.Output, StringComparison.Ordinal);
    }

    /// <summary>A client certificate from a CA nobody trusts, naming where its issuer could be downloaded.</summary>
    private static X509Certificate2 StrangerCertificate(string issuerUrl)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=Stranger Intermediate", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=daiko-device-0123456789abcdef", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(null, [issuerUrl]));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.2") }, false));
        using var leaf = request.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(10), [1, 2, 3, 4]);
        using var withKey = leaf.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    [Fact]
    public async Task APeerSendingAProxyProtocolHeader_ToAServerNotConfiguredForIt_IsAMalformedPeer()
    {
        var header = Daiko.Home.Control.ProxyProtocolV2.Encode(new(new IPEndPoint(IPAddress.Parse("192.0.2.9"), 4000), new IPEndPoint(IPAddress.Loopback, home.Port)));

        await Assert.ThrowsAnyAsync<Exception>(() => ControlPeer.ConnectAsync(home.Port, "127.0.1.10", timeout: TimeSpan.FromSeconds(20), preamble: header));

        Assert.DoesNotContain("192.0.2.9", home.Server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AMarketChainMissingItsIntermediate_FailsWithoutTheOption_AndItsAiaUrlIsNeverFetched()
    {
        using var chain = new AiaChain();

        var verdict = await MarketIntermediates.VerifyLeafAloneAsync(home, chain, "no-fetch-phone", "127.0.1.11");

        Assert.False(verdict.Trusted);
        Assert.Equal(Daiko.Tls.CertificateProblem.UntrustedRoot, verdict.Problem);
        Assert.Equal(0, chain.Server.Requests);
    }

    [Fact]
    public async Task ACertificateLessPeer_AskingForAnythingButEnroll_IsAnsweredUnauthenticated_AndTheConnectionCloses()
    {
        await using var peer = await ControlPeer.ConnectAsync(home.Port, "127.0.1.2");

        var reply = await peer.RequestAsync(5, new CardStatusRequest(), Reply);

        var refusal = Assert.IsType<ErrorReply>(reply);
        Assert.Equal(ErrorCode.Unauthenticated, refusal.Code);
        Assert.True(await peer.ClosedWithinAsync(TimeSpan.FromSeconds(5)), "the connection stayed open after the refusal");
    }

    [Fact]
    public async Task ACertificateLessPeer_SendingAnEnrollReply_IsRefused_AndTheConnectionCloses()
    {
        // The enroll type, but a reply: it is no request the gate lets through, and does not keep the stranger's slot.
        await using var peer = await ControlPeer.ConnectAsync(home.Port, "127.0.1.20");

        await peer.SendAsync(7, new EnrolledReply("0123456789abcdef", "phone", [0x30, 0x00], [0x30, 0x00]));

        var frame = await peer.ReadAsync(Reply);
        var refusal = Assert.IsType<ErrorReply>(frame?.Message);
        Assert.Equal(ErrorCode.Unauthenticated, refusal.Code);
        Assert.True(await peer.ClosedWithinAsync(TimeSpan.FromSeconds(5)), "the connection stayed open after the refusal");
    }

    [Fact]
    public async Task AStranger_FailingHandshakesOrAskingAgainAndAgain_IsLoggedOnceInTenSeconds_NotOnceAConnection()
    {
        // Lines about strangers are few: connections by the dozen from one address cannot fill the server's log and push
        // the lines that matter (enrollments, revocations, unlocks) out of what the log keeps.
        int HandshakeLines() => home.Server.Output.Split('\n').Count(l => l.Contains("control handshake failed from 127.0.1.21:", StringComparison.Ordinal));
        // One line a source in each 10 s: a loop that a loaded machine stretches past 10 s may log one more, never one a connection.
        static int MostLines(TimeSpan took) => 1 + (int)(took / TimeSpan.FromSeconds(10));
        var failing = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 15; i++)
        {
            using var tcp = new TcpClient(new IPEndPoint(IPAddress.Parse("127.0.1.21"), 0));
            await tcp.ConnectAsync(IPAddress.Loopback, home.Port);
            var stream = tcp.GetStream();
            await stream.WriteAsync("not a ClientHello\r\n\r\n"u8.ToArray());
            tcp.Client.Shutdown(SocketShutdown.Send);
            try
            {
                using var closed = new CancellationTokenSource(Reply);
                while (await stream.ReadAsync(new byte[256], closed.Token) > 0) { }
            }
            catch (IOException)
            {
                // Reset: closed as well.
            }
        }
        var failedFor = failing.Elapsed;
        var asking = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 10; i++)
        {
            await using var peer = await ControlPeer.ConnectAsync(home.Port, "127.0.1.22");
            Assert.Equal(ErrorCode.Unauthenticated, Assert.IsType<ErrorReply>(await peer.RequestAsync(5, new CardStatusRequest(), Reply)).Code);
        }
        var askedFor = asking.Elapsed;
        // The server's log lines leave from a task of their own.
        for (var i = 0; i < 50 && (HandshakeLines() == 0 || !home.Server.Output.Contains("(not enrolled, 127.0.1.22)", StringComparison.Ordinal)); i++) await Task.Delay(100);
        await Task.Delay(TimeSpan.FromSeconds(1));

        Assert.InRange(HandshakeLines(), 1, MostLines(failedFor));
        Assert.InRange(home.Server.Output.Split('\n').Count(l => l.Contains("(not enrolled, 127.0.1.22)", StringComparison.Ordinal)), 1, MostLines(askedFor));
    }

    [Fact]
    public async Task ACertificateLessPeer_SendingRelayData_IsRefused_AndTheConnectionCloses()
    {
        await using var peer = await ControlPeer.ConnectAsync(home.Port, "127.0.1.3");

        await peer.SendAsync(0, new RelayData(1, new byte[1000]));

        var frame = await peer.ReadAsync(Reply);
        var refusal = Assert.IsType<ErrorReply>(frame?.Message);
        Assert.Equal(ErrorCode.Unauthenticated, refusal.Code);
        Assert.True(await peer.ClosedWithinAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task AFrameLargerThanEnrollmentNeeds_FromACertificateLessPeer_IsRefusedBeforeItsBodyArrives()
    {
        await using var peer = await ControlPeer.ConnectAsync(home.Port, "127.0.1.4");
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(prefix, 512 * 1024);

        await peer.SendRawAsync(prefix);

        Assert.True(await peer.ClosedWithinAsync(TimeSpan.FromSeconds(5)), "the home server waited for a 512 KiB body from a peer that may only enroll");
    }

    [Fact]
    public async Task ACertificateLessPeer_ThatStaysSilent_IsClosedAfterTenSeconds()
    {
        await using var peer = await ControlPeer.ConnectAsync(home.Port, "127.0.1.5");
        var clock = System.Diagnostics.Stopwatch.StartNew();

        Assert.True(await peer.ClosedWithinAsync(TimeSpan.FromSeconds(30)), "a silent certificate-less peer was kept for 30 s");
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(8), $"closed after {clock.Elapsed.TotalSeconds:0.0} s: too soon to enroll");
    }

    [Fact]
    public async Task AnEnrolledDevice_SendingDataForARelayNeverOpened_IsRefused()
    {
        await using var device = await DeviceAsync("relay-prober", "127.0.1.6");
        Assert.IsType<CardStatusReply>(await device.RequestAsync(3, new CardStatusRequest(), Reply));

        await device.SendAsync(0, new RelayData(4242, new byte[1000]));

        var frame = await device.ReadAsync(Reply);
        var refusal = Assert.IsType<ErrorReply>(frame?.Message);
        Assert.Equal(ErrorCode.BadRequest, refusal.Code);
        Assert.Contains("relay 4242", refusal.Message, StringComparison.Ordinal);
        Assert.True(await device.ClosedWithinAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task AFloodOfStrangersFromOneAddress_DoesNotCrowdOutAnEnrolledTerminalBehindIt()
    {
        const string nat = "127.0.1.7";
        var certificate = await ControlPeer.EnrollAsync(home.Port, await home.NewCodeAsync("behind-nat"), nat);
        var strangers = new List<ControlPeer>();
        try
        {
            for (var i = 0; i < 40; i++) strangers.Add(await ControlPeer.ConnectAsync(home.Port, nat));

            await using var device = await ControlPeer.ConnectAsync(home.Port, nat, certificate);
            Assert.IsType<CardStatusReply>(await device.RequestAsync(3, new CardStatusRequest(), Reply));

            var closed = await Task.WhenAll(strangers.Select(s => s.ClosedWithinAsync(TimeSpan.FromSeconds(3))));
            Assert.True(closed.Count(c => !c) <= 16, $"{closed.Count(c => !c)} strangers from one address were kept open (at most 16)");
        }
        finally
        {
            foreach (var s in strangers) await s.DisposeAsync();
        }
    }

    [Fact]
    public async Task AFloodOfWrongCodesFromOneAddress_DoesNotKeepTheCorrectCodeFromAnotherOut_NorWriteALineForEach()
    {
        var code = await home.NewCodeAsync("flood-victim");
        await using (var flood = await ControlPeer.ConnectAsync(home.Port, "127.0.0.2"))
        {
            var heldBack = 0;
            for (var i = 0; i < 30; i++)
            {
                var wrong = Convert.ToHexString(RandomNumberGenerator.GetBytes(8));
                var refusal = Assert.IsType<ErrorReply>(await ControlPeer.TryEnrollAsync(home.Port, wrong, "127.0.0.2", flood, id: 2 * i + 1));
                Assert.Equal(ErrorCode.EnrollmentRefused, refusal.Code);
                if (refusal.Message.Contains("try again in", StringComparison.Ordinal)) heldBack++;
            }
            // Five failures are free; after that the address waits 1 s, 2 s, 4 s …: most of the flood is not even looked at.
            Assert.True(heldBack >= 20, $"only {heldBack} of 30 wrong codes from one address were held back");
        }
        // Nor does the flood write to the home store at will: one audit line for its address this minute.
        var audit = await Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(home.Home, "home.db")).Audit.RecentAsync(100_000);
        Assert.Single(audit, e => e.Action == "enroll" && e.Outcome.Contains("from 127.0.0.2", StringComparison.Ordinal));

        var enrolled = await ControlPeer.EnrollAsync(home.Port, code, "127.0.0.3");

        Assert.Contains("daiko-device-", enrolled.Subject, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EachMalformedField_IsAnsweredBadRequestNamingIt_AndTheConnectionGoesOn()
    {
        await using var device = await DeviceAsync("malformed", "127.0.1.8");
        var cases = new (string Field, byte[] Frame)[]
        {
            ("port", Daiko.Protocol.Wire.ControlFrame.Encode(11, new DelegateRequest(new MarketAddress("market.example", 70000, null, null), DelegationMode.Relay))),
            ("request", Daiko.Protocol.Wire.ControlFrame.Encode(13, new WalletPayRequest("not a COSE message"u8.ToArray()))),
            ("since", RawFrame(15, "pim-sync", w =>
            {
                w.WriteTextString("since");
                w.WriteUInt64(ulong.MaxValue);
                w.WriteTextString("changes");
                w.WriteStartArray(0);
                w.WriteEndArray();
            }, 2)),
            ("pin1", RawFrame(17, "unlock", w =>
            {
                w.WriteTextString("pin1");
                w.WriteInt64(1111);
                w.WriteTextString("pin2");
                w.WriteTextString("2222");
            }, 2)),
        };
        for (var i = 0; i < cases.Length; i++)
        {
            var id = 11 + 2 * i;
            await device.SendRawAsync(cases[i].Frame);
            var frame = await device.ReadAsync(Reply);
            Assert.Equal(id, frame?.Id);
            var refusal = Assert.IsType<ErrorReply>(frame?.Message);
            Assert.True(refusal.Code == ErrorCode.BadRequest, $"{cases[i].Field}: {refusal.Code.ToWire()}: {refusal.Message}");
            Assert.Contains($"'{cases[i].Field}'", refusal.Message, StringComparison.Ordinal);
        }
        Assert.IsType<CardStatusReply>(await device.RequestAsync(99, new CardStatusRequest(), Reply));
    }

    private static byte[] RawFrame(long id, string type, Action<CborWriter> fields, int fieldCount)
    {
        var w = new CborWriter(CborConformanceMode.Lax);
        w.WriteStartMap(2 + fieldCount);
        w.WriteTextString("t");
        w.WriteTextString(type);
        w.WriteTextString("id");
        w.WriteInt64(id);
        fields(w);
        w.WriteEndMap();
        var body = w.Encode();
        var frame = new byte[4 + body.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)body.Length);
        body.CopyTo(frame, 4);
        return frame;
    }

    [Fact]
    public async Task APimStoreAboveOneMebibyte_SyncsBackFromRevisionZero_InPages()
    {
        await using var device = await DeviceAsync("pim-phone", "127.0.1.9");
        Assert.IsType<UnlockedReply>(await device.RequestAsync(3, new UnlockRequest(HomeServeProcess.Pin1, HomeServeProcess.Pin2), Reply));
        var body = new string('x', 60_000);
        for (var batch = 0; batch < 2; batch++)
        {
            var changes = Enumerable.Range(0, 10).Select(i => new PimEntryChange($"note-{batch}-{i}", PimEntryKind.Todo, 0, false, body)).ToList();
            var stored = Assert.IsType<PimSyncedReply>(await device.RequestAsync(5 + 2 * batch, new PimSyncRequest(0, changes), Reply));
            Assert.All(stored.Results, r => Assert.Equal(PimEntryOutcome.Applied, r.Outcome));
        }

        var items = new Dictionary<string, PimEntry>();
        var since = 0L;
        var pages = 0;
        for (var id = 101L; ; id += 2)
        {
            var page = Assert.IsType<PimSyncedReply>(await device.RequestAsync(id, new PimSyncRequest(since, []), Reply));
            pages++;
            foreach (var entry in page.Changes) items[entry.Id] = entry;
            since = page.Revision;
            if (!page.More) break;
            Assert.True(pages < 50, "paging did not end");
        }

        Assert.Equal(20, items.Count);
        Assert.True(items.Values.Sum(e => e.Body.Length) > 1 << 20);
        Assert.True(pages > 1, "the whole store came back in one reply");
    }
}
