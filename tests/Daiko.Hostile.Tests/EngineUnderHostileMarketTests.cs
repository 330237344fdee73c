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

    [Theory]
    [InlineData(30 * 1024)]
    [InlineData(100)]
    public async Task TicketsKept_AreCappedInCountAndBytes_NewestKept(int ticketBytes)
    {
        await using var market = new HostileTlsServer(pki.Pki.Server.Certificate, async c =>
        {
            await c.ReadRequestAsync();
            for (var i = 0; i < 200; i++) await c.SendTicketAsync(ticketBytes);
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
