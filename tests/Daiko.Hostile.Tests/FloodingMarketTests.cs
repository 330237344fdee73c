using Daiko.TestSupport.Hostile;

namespace Daiko.Hostile.Tests;

/// <summary>
/// <c>daiko tls get</c> against a market that floods: tickets, KeyUpdates, empty records,
/// change_cipher_spec, tiny chunks, huge headers. The client stays within time and memory bounds and
/// either finishes or gives up with the right alert.
/// </summary>
public sealed class FloodingMarketTests(HostilePki pki) : HostileMarketBase(pki), IClassFixture<HostilePki>
{
    /// <summary>
    /// Post-handshake messages without end carry no data: tickets as much as KeyUpdates, more than 16 in a
    /// row is unexpected_message, not a read that spins (and keeps the connection) for as long as the market likes.
    /// </summary>
    [Theory]
    [InlineData("NewSessionTicket")]
    [InlineData("KeyUpdate")]
    public async Task PostHandshakeStorm_FromAMarketThatNeverReads_IsRefusedQuickly(string message)
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\n\r\nbegin");
            for (var i = 0; i < 100_000; i++) await (message == "KeyUpdate" ? c.SendKeyUpdateAsync(requestUpdate: true) : c.SendTicketAsync(1024));
        });
        AssertExit(1, client, market);
        AssertAlert(Alert.UnexpectedMessage, client, market);
        AssertWithin(20, client);
        Assert.Contains(message, client.StandardError);
    }

    /// <summary>A market's usual tickets (two, as OpenSSL sends) before and between data are followed.</summary>
    [Fact]
    public async Task AFewTicketsBetweenData_AreFollowed()
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.SendTicketAsync(64);
            await c.SendTicketAsync(64);
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
            await c.SendTicketAsync(64);
            await c.SendAsync("cd");
            await c.SendCloseNotifyAsync();
        });
        AssertExit(0, client, market);
        Assert.Equal("abcd", client.StandardOutput);
        AssertAlert(Alert.CloseNotify, client, market);
    }

    [Fact]
    public async Task AFewKeyUpdatesBetweenData_AreFollowed()
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab");
            await c.SendKeyUpdateAsync(requestUpdate: true);
            await c.SendKeyUpdateAsync(requestUpdate: true);
            await c.SendAsync("cd");
            await c.SendKeyUpdateAsync(requestUpdate: false);
            await c.SendAsync("ef");
            await c.SendCloseNotifyAsync();
        });
        AssertExit(0, client, market);
        Assert.Equal("abcdef", client.StandardOutput);
        AssertAlert(Alert.CloseNotify, client, market);
    }

    [Fact]
    public async Task EmptyRecordFlood_IsRefused()
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\n\r\nbegin");
            for (var i = 0; i < 10_000; i++) await c.SendRecordAsync(23, []);
        });
        AssertExit(1, client, market);
        AssertAlert(Alert.UnexpectedMessage, client, market);
        AssertWithin(20, client);
    }

    [Fact]
    public async Task ChangeCipherSpecFlood_DuringTheHandshake_IsRefused()
    {
        var (client, market) = await FetchAsync(_ => Task.CompletedTask, new HandshakePlan
        {
            BeforeServerHello = async c =>
            {
                for (var i = 0; i < 10_000; i++) await c.SendPlainRecordAsync(20, [1]);
            },
        });
        AssertExit(1, client, market);
        AssertAlert(Alert.UnexpectedMessage, client, market);
        AssertWithin(20, client);
    }

    [Fact]
    public async Task ChunkedBody_In64ByteChunks_IsLinear()
    {
        const int size = 2 * 1024 * 1024;
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            // One record per chunk, so that every read the client makes brings one more chunk.
            var chunk = System.Text.Encoding.ASCII.GetBytes("40\r\n" + new string('z', 64) + "\r\n");
            for (var i = 0; i < size / 64; i++) await c.SendRecordAsync(23, chunk);
            await c.SendAsync("0\r\n\r\n");
            await c.SendCloseNotifyAsync();
        });
        AssertExit(0, client, market);
        Assert.Equal(size, client.StandardOutput.Length);
        // Quadratic parsing took 35 s of CPU for 2 MiB; linear parsing is well under a second. The bound
        // is generous for a loaded machine (two cores shared with other builds).
        AssertWithin(30, client);
    }

    [Fact]
    public async Task HugeHeaders_AreRefused()
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\n");
            for (var i = 0; i < 10_000; i++) await c.SendAsync($"X-Filler-{i}: {new string('h', 100)}\r\n");
            await c.SendCloseNotifyAsync();
        });
        AssertExit(1, client, market);
        Assert.Contains("not valid HTTP/1.1", client.StandardError);
        AssertWithin(20, client);
    }
}
