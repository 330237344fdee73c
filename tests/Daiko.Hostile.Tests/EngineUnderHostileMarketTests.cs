using System.Text;
using Daiko.Tls;
using Daiko.TestSupport.Hostile;

namespace Daiko.Hostile.Tests;

/// <summary>The engine in process against the hostile market, where the CLI cannot show the behaviour.</summary>
public sealed class EngineUnderHostileMarketTests(HostilePki pki) : IClassFixture<HostilePki>
{
    private TlsClientOptions Options => new()
    {
        ServerName = "localhost",
        CertificateValidator = X509ChainValidator.FromPemFiles([pki.Pki.RootPath]),
        HandshakeTimeout = TimeSpan.FromSeconds(10),
        OperationTimeout = TimeSpan.FromSeconds(10),
    };

    /// <summary>RFC 8446 §4.6.3: requests are answered by one KeyUpdate before the next data, not one each from the read path.</summary>
    [Fact]
    public async Task KeyUpdateRequests_AreAnsweredOnce_BeforeTheNextWrite()
    {
        var updatesBeforeSecondRequest = -1;
        var secondRequest = "";
        await using var market = new HostileTlsServer(pki.Pki.Server.Certificate, async c =>
        {
            await c.ReadRequestAsync();
            for (var i = 0; i < 3; i++) await c.SendKeyUpdateAsync(requestUpdate: true);
            await c.SendAsync("ping");
            secondRequest = await c.ReadRequestAsync();
            updatesBeforeSecondRequest = c.ClientKeyUpdates;
            await c.SendAsync("pong");
            await c.SendCloseNotifyAsync();
        });
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var connection = await TlsClient.ConnectAsync("127.0.0.1", market.Port, Options, cts.Token);
        await connection.WriteAsync("first\r\n\r\n"u8.ToArray(), cts.Token);
        var buffer = new byte[4];
        await connection.ReadExactlyAsync(buffer, cts.Token);
        Assert.Equal("ping", Encoding.ASCII.GetString(buffer));
        await connection.WriteAsync("second\r\n\r\n"u8.ToArray(), cts.Token);
        using var rest = new MemoryStream();
        await connection.CopyToAsync(rest, cts.Token);

        Assert.Equal("pong", Encoding.ASCII.GetString(rest.ToArray()));
        Assert.Equal("second\r\n\r\n", secondRequest);
        Assert.Equal(1, updatesBeforeSecondRequest);
    }

    /// <summary>
    /// A market that streams data and sends no ticket: the wait for one ends once 64 KiB wait unread, long
    /// before its timeout, instead of holding everything the market sends; what was read stays readable, in order.
    /// </summary>
    [Fact]
    public async Task WaitForTicket_FromAMarketStreamingDataWithoutTickets_EndsEarly_AndTheDataStaysReadable()
    {
        var data = new byte[1024 * 1024];
        for (var i = 0; i < data.Length; i++) data[i] = (byte)(i * 7 + i / 251);
        await using var market = new HostileTlsServer(pki.Pki.Server.Certificate, async c =>
        {
            await c.SendAsync(data);
            await c.ReadRequestAsync();
            await c.SendCloseNotifyAsync();
        });
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var connection = await TlsClient.ConnectAsync("127.0.0.1", market.Port, Options, cts.Token);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        var ticket = await connection.WaitForTicketAsync(TimeSpan.FromSeconds(30), cts.Token);
        waited.Stop();
        await connection.WriteAsync("done\r\n\r\n"u8.ToArray(), cts.Token);
        using var received = new MemoryStream();
        await connection.CopyToAsync(received, cts.Token);

        Assert.Null(ticket);
        // The market had 1 MiB in flight and would have kept the wait busy until its 30 s timeout.
        Assert.True(waited.Elapsed < TimeSpan.FromSeconds(10), $"the wait took {waited.Elapsed.TotalSeconds:0.0} s");
        Assert.True(data.AsSpan().SequenceEqual(received.ToArray()), "the data read after the wait is not what the market sent");
    }

    /// <summary>
    /// A CertificateRequest whose only scheme is 0x0000, which no signer has: the client answers with an
    /// empty Certificate, as when no scheme is in common, and the market decides (this one goes on).
    /// </summary>
    [Fact]
    public async Task CertificateRequest_ListingOnlyScheme0_IsAnsweredAsWithNoSchemeInCommon()
    {
        await using var market = new HostileTlsServer(pki.Pki.Server.Certificate, async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("ok");
            await c.SendCloseNotifyAsync();
        }, new HandshakePlan { CertificateRequestExtensions = [(13, [0, 2, 0, 0])] });
        var options = Options with { ClientCredential = SoftwareSigner.LoadCredential(pki.Pki.User.CertificatePath, pki.Pki.User.KeyPath) };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var connection = await TlsClient.ConnectAsync("127.0.0.1", market.Port, options, cts.Token);
        await connection.WriteAsync("go\r\n\r\n"u8.ToArray(), cts.Token);
        using var received = new MemoryStream();
        await connection.CopyToAsync(received, cts.Token);

        Assert.Equal("ok", Encoding.ASCII.GetString(received.ToArray()));
    }

    [Theory]
    [InlineData(30 * 1024)]
    [InlineData(100)]
    public async Task TicketsKept_AreCappedInCountAndBytes_NewestKept(int ticketBytes)
    {
        await using var market = new HostileTlsServer(pki.Pki.Server.Certificate, async c =>
        {
            await c.ReadRequestAsync();
            // 16 tickets in a row, as many as a connection takes without data between them (more is a flood,
            // refused): beyond the count cap at 100 bytes, beyond the byte cap at 30 KiB.
            for (var i = 0; i < 15; i++) await c.SendTicketAsync(ticketBytes);
            await c.SendTicketAsync(99);
            await c.SendAsync("done");
            await c.SendCloseNotifyAsync();
        });
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var connection = await TlsClient.ConnectAsync("127.0.0.1", market.Port, Options, cts.Token);
        await connection.WriteAsync("go\r\n\r\n"u8.ToArray(), cts.Token);
        using var rest = new MemoryStream();
        await connection.CopyToAsync(rest, cts.Token);

        var kept = connection.Tickets;
        Assert.InRange(kept.Count, 1, 8);
        Assert.True(kept.Sum(t => t.Identity.Length) <= 128 * 1024);
        if (ticketBytes == 100) Assert.Equal(8, kept.Count);
        Assert.Equal(99, kept[^1].Identity.Length);
    }
}

/// <summary>The local forwarder passes a market's cut on as a TCP reset, and a clean end as a clean end.</summary>
public sealed class ForwarderUnderHostileMarketTests(HostilePki pki) : IClassFixture<HostilePki>
{
    private async Task<(byte[] Received, Exception? Error)> ThroughForwarderAsync(bool closeNotify)
    {
        await using var market = new HostileTlsServer(pki.Pki.Server.Certificate, async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\n\r\npart");
            if (closeNotify) await c.SendCloseNotifyAsync();
            c.CloseWithoutCloseNotify();
        });
        var options = new TlsClientOptions { ServerName = "localhost", CertificateValidator = X509ChainValidator.FromPemFiles([pki.Pki.RootPath]) };
        await using var forwarder = Daiko.Terminal.Forwarding.LocalForwarder.Start(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0),
            async ct => await TlsClient.ConnectAsync("127.0.0.1", market.Port, options, ct));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var local = new System.Net.Sockets.TcpClient();
        await local.ConnectAsync(forwarder.LocalEndPoint, cts.Token);
        var stream = local.GetStream();
        await stream.WriteAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray(), cts.Token);
        using var received = new MemoryStream();
        try
        {
            await stream.CopyToAsync(received, cts.Token);
            return (received.ToArray(), null);
        }
        catch (IOException e)
        {
            return (received.ToArray(), e);
        }
    }

    [Fact]
    public async Task CutWithoutCloseNotify_ReachesTheLocalClientAsAReset()
    {
        var (received, error) = await ThroughForwarderAsync(closeNotify: false);
        var reset = Assert.IsType<System.Net.Sockets.SocketException>(error?.InnerException);
        Assert.Equal(System.Net.Sockets.SocketError.ConnectionReset, reset.SocketErrorCode);
        Assert.True(Encoding.ASCII.GetString(received).EndsWith("part", StringComparison.Ordinal) || received.Length == 0);
    }

    [Fact]
    public async Task CloseNotify_ReachesTheLocalClientAsACleanEnd()
    {
        var (received, error) = await ThroughForwarderAsync(closeNotify: true);
        Assert.Null(error);
        Assert.EndsWith("part", Encoding.ASCII.GetString(received), StringComparison.Ordinal);
    }
}
