using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Daiko.Hostile.Tests.Peers;
using Daiko.Home.Control;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport.Hostile;

namespace Daiko.Hostile.Tests;

[CollectionDefinition("proxied home", DisableParallelization = true)]
public sealed class ProxiedHomeCollection : ICollectionFixture<ProxiedHomeServe>;

/// <summary>
/// <c>daiko home serve --proxy-protocol</c> behind a real HAProxy (<c>send-proxy-v2</c>): the per-source
/// limits count the client HAProxy names, not HAProxy's own address; a connection without a valid
/// PROXY protocol v2 header is refused before its TLS handshake. Clients come from 127.0.2.x.
/// </summary>
[Collection("proxied home")]
public sealed class ProxyProtocolTests(ProxiedHomeServe home)
{
    private static readonly TimeSpan Reply = TimeSpan.FromSeconds(30);

    private int Balancer => home.Balancer.Port;

    [Fact]
    public async Task ThroughHaproxy_AFloodOfWrongCodesFromOneClient_DoesNotKeepTheCorrectCodeFromAnotherOut()
    {
        var code = await home.NewCodeAsync("proxied-victim");
        await using (var flood = await ControlPeer.ConnectAsync(Balancer, "127.0.2.2"))
        {
            var heldBack = 0;
            for (var i = 0; i < 12; i++)
            {
                var wrong = Convert.ToHexString(RandomNumberGenerator.GetBytes(8));
                var refusal = Assert.IsType<ErrorReply>(await ControlPeer.TryEnrollAsync(Balancer, wrong, "127.0.2.2", flood, id: 2 * i + 1));
                if (refusal.Message.Contains("try again in", StringComparison.Ordinal)) heldBack++;
            }
            Assert.True(heldBack >= 5, $"only {heldBack} of 12 wrong codes from one client were held back");
        }

        var enrolled = await ControlPeer.EnrollAsync(Balancer, code, "127.0.2.3");

        Assert.Contains("daiko-device-", enrolled.Subject, StringComparison.Ordinal);
        await WaitForLogAsync("(not enrolled, 127.0.2.2)");
    }

    [Fact]
    public async Task ThroughHaproxy_StrangersAreCountedPerClient_NotPerBalancer()
    {
        await using var quiet = await ControlPeer.ConnectAsync(Balancer, "127.0.2.5");
        var flood = new List<ControlPeer>();
        try
        {
            for (var i = 0; i < 30; i++)
            {
                flood.Add(await ControlPeer.ConnectAsync(Balancer, "127.0.2.4"));
                // The quiet stranger speaks now and then (a wrong code), so that only eviction could close it, never its idle timeout;
                // the last time after the whole flood: it is still open, as the flood filled 127.0.2.4's slots, not the balancer's (127.0.0.1).
                if (i % 10 != 9) continue;
                var wrong = Convert.ToHexString(RandomNumberGenerator.GetBytes(8));
                var refusal = Assert.IsType<ErrorReply>(await ControlPeer.TryEnrollAsync(Balancer, wrong, "127.0.2.5", quiet, id: i));
                Assert.Equal(ErrorCode.EnrollmentRefused, refusal.Code);
            }

            var closed = await Task.WhenAll(flood.Select(s => s.ClosedWithinAsync(TimeSpan.FromSeconds(3))));
            Assert.True(closed.Count(c => !c) <= 16, $"{closed.Count(c => !c)} strangers from one client were kept open (at most 16)");
        }
        finally
        {
            foreach (var s in flood) await s.DisposeAsync();
        }
    }

    [Fact]
    public async Task ADeviceThroughHaproxy_IsServed()
    {
        var certificate = await ControlPeer.EnrollAsync(Balancer, await home.NewCodeAsync("proxied-phone"), "127.0.2.6");
        await using var device = await ControlPeer.ConnectAsync(Balancer, "127.0.2.6", certificate);

        Assert.IsType<CardStatusReply>(await device.RequestAsync(3, new CardStatusRequest(), Reply));
    }

    [Fact]
    public async Task AConnectionWithoutAHeader_IsRefusedBeforeItsHandshake()
    {
        await Assert.ThrowsAnyAsync<Exception>(() => ControlPeer.ConnectAsync(home.Port, "127.0.2.7", timeout: TimeSpan.FromSeconds(20)));

        await WaitForLogAsync("a connection from 127.0.2.7 was refused: the connection did not begin with a PROXY protocol v2 header");
    }

    public static TheoryData<string, byte[], string> MalformedHeaders()
    {
        var client = new ProxyHeader(new IPEndPoint(IPAddress.Parse("192.0.2.9"), 4000), new IPEndPoint(IPAddress.Loopback, 7443));
        var valid = ProxyProtocolV2.Encode(client, crc32c: true);
        var badCrc = (byte[])valid.Clone();
        badCrc[^1] ^= 1;
        var oversized = valid[..16];
        oversized[14] = 0xff;
        oversized[15] = 0xff;
        var udp = ProxyProtocolV2.Encode(client);
        udp[13] = 0x12;
        var version1 = (byte[])valid.Clone();
        version1[12] = 0x11;
        return new TheoryData<string, byte[], string>
        {
            { "127.0.2.10", "PROXY TCP4 192.0.2.9 127.0.0.1 4000 7443\r\n"u8.ToArray(), "v1 (text)" },
            { "127.0.2.11", badCrc, "CRC32c does not match" },
            { "127.0.2.12", oversized, "over the limit" },
            { "127.0.2.13", udp, "names no TCP client" },
            { "127.0.2.14", version1, "version 1" },
            { "127.0.2.15", valid[..20], "ended inside" },
        };
    }

    [Theory]
    [MemberData(nameof(MalformedHeaders))]
    public async Task AMalformedHeader_IsRefused_AndTheConnectionClosed(string from, byte[] header, string reason)
    {
        using var tcp = new TcpClient(new IPEndPoint(IPAddress.Parse(from), 0));
        await tcp.ConnectAsync(IPAddress.Loopback, home.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(header);
        if (reason == "ended inside") tcp.Client.Shutdown(SocketShutdown.Send);

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var sink = new byte[256];
        try
        {
            Assert.Equal(0, await stream.ReadAsync(sink, deadline.Token));
        }
        catch (IOException)
        {
            // Reset: closed as well.
        }
        await WaitForLogAsync($"a connection from {from} was refused: ");
        Assert.Contains(reason, LogLineFrom(from), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AValidHeader_FromAPeerThatIsNotANamedBalancer_IsRefusedAndLogged()
    {
        var header = ProxyProtocolV2.Encode(new ProxyHeader(new IPEndPoint(IPAddress.Parse("192.0.2.77"), 4000), new IPEndPoint(IPAddress.Loopback, home.Port)));

        await Assert.ThrowsAnyAsync<Exception>(() => ControlPeer.ConnectAsync(home.Port, "127.0.3.5", preamble: header, timeout: TimeSpan.FromSeconds(20)));

        await WaitForLogAsync("a connection from 127.0.3.5 was refused: it is not a load balancer this server trusts (--proxy-from 127.0.0.1/32,127.0.2.0/24,::1/128)");
        Assert.DoesNotContain("192.0.2.77", home.Server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ALocalHeader_StandsForTheConnectionItself()
    {
        await using var peer = await ControlPeer.ConnectAsync(home.Port, "127.0.2.16", preamble: ProxyProtocolV2.Encode(ProxyHeader.Local));

        var refusal = Assert.IsType<ErrorReply>(await peer.RequestAsync(3, new CardStatusRequest(), Reply));

        Assert.Equal(ErrorCode.Unauthenticated, refusal.Code);
        // The server logs the refusal before it replies, but its log lines leave from a task of their own.
        await WaitForLogAsync("(not enrolled, 127.0.2.16)");
    }

    private string LogLineFrom(string from) =>
        home.Server.Output.Split('\n').First(l => l.Contains($"a connection from {from} was refused", StringComparison.Ordinal));

    private async Task WaitForLogAsync(string text)
    {
        for (var i = 0; i < 100 && !home.Server.Output.Contains(text, StringComparison.Ordinal); i++) await Task.Delay(100);
        Assert.Contains(text, home.Server.Output, StringComparison.Ordinal);
    }
}
