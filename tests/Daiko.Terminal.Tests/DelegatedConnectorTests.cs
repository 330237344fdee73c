using System.Net.Sockets;
using Daiko.TestSupport;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Terminal.Sessions;
using Xunit;

namespace Daiko.Terminal.Tests;

/// <summary>
/// The connector against a scripted home side (a ControlConnection on loopback TCP answering one
/// way): it asks once, and opens the session the reply's type says.
/// </summary>
public sealed class DelegatedConnectorTests : IAsyncLifetime
{
    private TcpClient _client = null!;
    private TcpClient _accepted = null!;
    private ControlConnection _home = null!;
    private readonly List<DelegateRequest> _asked = new();
    private Func<DelegateRequest, ControlMessage> _answer = _ => new RelayReply(1);

    public async Task InitializeAsync()
    {
        (_client, _accepted) = await Loopback.ConnectedPairAsync();
        _home = new ControlConnection(_accepted.GetStream(), async (request, c) =>
        {
            var delegate_ = (DelegateRequest)request.Message;
            lock (_asked) _asked.Add(delegate_);
            var relay = c.OpenRelay(1);
            await c.ReplyAsync(request, _answer(delegate_));
            await relay.WriteAsync("HTTP/1.0 200 OK\r\n\r\nfrom the market"u8.ToArray());
            await relay.DisposeAsync();
        });
        _home.Start();
    }

    public async Task DisposeAsync()
    {
        await _home.DisposeAsync();
        _client.Dispose();
        _accepted.Dispose();
    }

    [Fact]
    public async Task Auto_AsksOnce_AndUsesTheModeTheHomeServerChose()
    {
        await using var control = new ControlConnection(_client.GetStream());
        control.Start();

        var session = await new DelegatedConnector(control).ConnectAsync("market.example", 443, DelegationMode.Auto, alpn: "http/1.1");

        Assert.Equal(DelegationMode.Relay, session.Mode);
        using var reader = new StreamReader(session.Stream);
        Assert.EndsWith("from the market", await reader.ReadToEndAsync(), StringComparison.Ordinal);
        var asked = Assert.Single(_asked);
        Assert.Equal((DelegationMode.Auto, "market.example", 443, "market.example", "http/1.1"), (asked.Mode, asked.Market.Host, asked.Market.Port, asked.Market.Sni, asked.Market.Alpn));
    }

    [Fact]
    public async Task AReplyOfAnotherKind_IsRefused_NotMisread()
    {
        _answer = _ => new PrefetchedReply(1, 1);
        await using var control = new ControlConnection(_client.GetStream());
        control.Start();

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => new DelegatedConnector(control).ConnectAsync("market.example", 443, DelegationMode.Relay));

        Assert.Equal(ErrorCode.BadRequest, e.Code);
    }

    [Fact]
    public void TheTerminal_DoesNotLinkTheHomeServer()
    {
        var references = typeof(DelegatedConnector).Assembly.GetReferencedAssemblies().Select(a => a.Name).ToList();

        Assert.DoesNotContain("Daiko.Home", references);
        Assert.DoesNotContain("Npgsql", references);
        Assert.DoesNotContain("Microsoft.Data.Sqlite", references);
        Assert.Contains("Daiko.Protocol", references);
    }
}
