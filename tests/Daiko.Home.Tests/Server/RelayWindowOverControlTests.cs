using System.Text;
using Daiko.Protocol;
using Daiko.TestSupport;
using Daiko.Terminal.Sessions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// A real home server and a market that answers with 8 MiB: in daiko/2 a relayed session whose reader
/// stops holds only its relay's window on the control channel, so the channel's other relays and requests
/// go on, and the home server stops reading the market instead of filling the channel. A daiko/1 peer on
/// either side still relays as before.
/// </summary>
[Collection("home card")]
public sealed class RelayWindowOverControlTests
{
    private const int Total = 8 << 20;

    private static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        for (var i = 0; i < length; i++) bytes[i] = (byte)(i % 251);
        return bytes;
    }

    private static Task<KestrelServer> BigMarketAsync(HomeFixture home) =>
        KestrelServer.StartAsync(home.Pki, routes: app =>
        {
            app.MapGet("/big", () => Results.Bytes(Pattern(Total), "application/octet-stream"));
            app.MapGet("/subject", (HttpContext c) => Results.Bytes(Encoding.UTF8.GetBytes(c.Connection.ClientCertificate?.Subject ?? ""), "text/plain"));
        });

    private static async Task AskAsync(Stream session, string path, CancellationToken ct) =>
        await session.WriteAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"), ct);

    /// <summary>
    /// Reads one answer's header and its body, as long as its Content-Length says (Kestrel ends a connection
    /// without close_notify, so a session is read to its body's length, not to its end).
    /// </summary>
    private static async Task<byte[]> ReadAnswerAsync(Stream session, CancellationToken ct)
    {
        var header = new List<byte>();
        var one = new byte[1];
        while (header.Count < 4 || !header[^4..].SequenceEqual("\r\n\r\n"u8.ToArray()))
        {
            Assert.True(await session.ReadAsync(one, ct) == 1, "the market's answer has no header");
            header.Add(one[0]);
        }
        var text = Encoding.ASCII.GetString([.. header]);
        Assert.StartsWith("HTTP/1.1 200", text, StringComparison.Ordinal);
        var length = text.Split("\r\n").SingleOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))?["Content-Length:".Length..].Trim() ?? throw new InvalidDataException("no Content-Length in " + text);
        var body = new byte[int.Parse(length, System.Globalization.CultureInfo.InvariantCulture)];
        await session.ReadExactlyAsync(body, ct);
        return body;
    }

    private static void AssertBig(byte[] body) => Assert.True(body.AsSpan().SequenceEqual(Pattern(Total)), "the 8 MiB arrived altered or cut");

    private static async Task<string> WhoAmIAsync(Stream session, CancellationToken ct)
    {
        await AskAsync(session, "/subject", ct);
        return Encoding.UTF8.GetString(await ReadAnswerAsync(session, ct));
    }

    [Fact]
    public async Task ARelayedSessionNobodyReads_DoesNotHoldTheChannel_AndGivesEveryByteOnceRead()
    {
        await using var home = HomeFixture.Start();
        using var market = await BigMarketAsync(home);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await using var control = await home.UnlockedTerminalAsync(cts.Token);
        Assert.Equal(ControlProtocol.Alpn, control.Version);
        var connector = new DelegatedConnector(control);

        var stalled = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Relay, cancellationToken: cts.Token);
        var before = control.BytesReceived;
        await AskAsync(stalled.Stream, "/big", cts.Token);
        // The market's answer comes down until the relay's window is full; nobody reads it.
        while (control.BytesReceived - before < ControlProtocol.RelayWindowBytes) await Task.Delay(20, cts.Token);

        using (var step = CancellationTokenSource.CreateLinkedTokenSource(cts.Token))
        {
            step.CancelAfter(TimeSpan.FromSeconds(30));
            // Another relayed session and a request on the same channel go on.
            var other = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Relay, cancellationToken: step.Token);
            Assert.Contains("Alice Example", await WhoAmIAsync(other.Stream, step.Token), StringComparison.Ordinal);
            await new Daiko.Terminal.HomeControl(control).CardStatusAsync(step.Token);
        }
        // The home server sent the stalled relay no more than its window: the rest waits at the market, not in the channel.
        Assert.InRange(control.BytesReceived - before, ControlProtocol.RelayWindowBytes, Total / 4);
        Assert.Equal(0, control.BufferedBytes);

        AssertBig(await ReadAnswerAsync(stalled.Stream, cts.Token));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task WithADaiko1Peer_TheChannelSpeaksDaiko1_AndRelaysStillCarryEveryByte(bool olderHomeServer)
    {
        await using var home = HomeFixture.Start(o => olderHomeServer ? o with { ControlVersions = [ControlProtocol.Alpn1] } : o);
        using var market = await BigMarketAsync(home);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        // A terminal that offers both against a daiko/1 home server, or one that offers only daiko/1 against a home server that speaks both.
        await using var control = await home.UnlockedTerminalAsync(cts.Token, versions: olderHomeServer ? null : [ControlProtocol.Alpn1]);
        Assert.Equal(ControlProtocol.Alpn1, control.Version);
        var connector = new DelegatedConnector(control);

        var relayed = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Relay, cancellationToken: cts.Token);
        await AskAsync(relayed.Stream, "/big", cts.Token);
        AssertBig(await ReadAnswerAsync(relayed.Stream, cts.Token));
        var handedOff = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Handoff, cancellationToken: cts.Token);
        Assert.Contains("Alice Example", await WhoAmIAsync(handedOff.Stream, cts.Token), StringComparison.Ordinal);
    }
}
