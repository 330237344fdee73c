using System.Net.Sockets;
using Daiko.TestSupport;
using Daiko.Protocol.Messages;
using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Tests;

/// <summary>The control connection over a loopback TCP pair: typed requests and replies, and malformed requests answered with bad-request.</summary>
public sealed class ControlConnectionTests : IAsyncLifetime
{
    private TcpClient _client = null!;
    private TcpClient _accepted = null!;
    private ControlConnection _server = null!;

    public async Task InitializeAsync()
    {
        (_client, _accepted) = await Loopback.ConnectedPairAsync();
        _server = new ControlConnection(_accepted.GetStream(), async (request, c) =>
        {
            ControlMessage reply = request.Message switch
            {
                UnlockRequest { Pin1: "1111", Pin2: "2222" } => new UnlockedReply(CardState.CryptoReady),
                UnlockRequest => new ErrorReply(ErrorCode.WrongPin2, "wrong PIN2", 2),
                _ => new ErrorReply(ErrorCode.UnknownRequest, "not here"),
            };
            await c.ReplyAsync(request, reply);
        });
        _server.Start();
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _client.Dispose();
        _accepted.Dispose();
    }

    [Fact]
    public async Task TypedRequest_GetsItsTypedReply_AndErrorsBecomeExceptions()
    {
        await using var client = new ControlConnection(_client.GetStream());
        client.Start();

        Assert.Equal(CardState.CryptoReady, (await client.RequestAsync<UnlockedReply>(new UnlockRequest("1111", "2222"), CancellationToken.None)).State);
        var e = await Assert.ThrowsAsync<ControlErrorException>(() => client.RequestAsync<UnlockedReply>(new UnlockRequest("1111", "0000"), CancellationToken.None));
        Assert.Equal((ErrorCode.WrongPin2, 2), (e.Code, e.TriesLeft));
    }

    [Fact]
    public async Task APeerThatDoesNotAnswer_IsNamedInTheError_AfterItsRequestTimeout_AndOnceItClosed()
    {
        // The other end reads nothing and answers nothing, as a stopped terminal agent.
        var (near, far) = await Loopback.ConnectedPairAsync();
        using (near)
        {
            await using var agent = new ControlConnection(near.GetStream()) { Peer = "the terminal agent", RequestTimeout = TimeSpan.FromMilliseconds(300) };
            agent.Start();

            var silent = await Assert.ThrowsAsync<ControlErrorException>(() => agent.RequestAsync<UnlockedReply>(new UnlockRequest("1111", "2222"), CancellationToken.None));
            Assert.Equal((ErrorCode.Unavailable, "the terminal agent did not answer in time"), (silent.Code, silent.Message));

            far.Dispose();
            await agent.Completion.WaitAsync(TimeSpan.FromSeconds(10));
            var gone = await Assert.ThrowsAsync<ControlErrorException>(() => agent.RequestAsync<UnlockedReply>(new UnlockRequest("1111", "2222"), CancellationToken.None));
            Assert.StartsWith("the terminal agent ", gone.Message, StringComparison.Ordinal);
        }
        // Unnamed, the other end is the home server, as for every connection the terminal opens to it.
        var (home, other) = await Loopback.ConnectedPairAsync();
        using (home)
        using (other)
        {
            await using var control = new ControlConnection(home.GetStream()) { RequestTimeout = TimeSpan.FromMilliseconds(300) };
            control.Start();
            var silent = await Assert.ThrowsAsync<ControlErrorException>(() => control.RequestAsync<UnlockedReply>(new UnlockRequest("1111", "2222"), CancellationToken.None));
            Assert.Equal("the home server did not answer in time", silent.Message);
        }
    }

    [Fact]
    public async Task AMalformedRequest_IsAnsweredBadRequestNamingTheField_AndTheConnectionGoesOn()
    {
        var stream = _client.GetStream();
        var entries = ControlFrameTests.Entries(ControlFrame.EncodeBody(3, new UnlockRequest("1111", "2222")));
        var body = ControlFrameTests.Rebuild(entries, "pin1", [0x07]);
        var frame = new byte[4 + body.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)body.Length);
        body.CopyTo(frame, 4);
        await stream.WriteAsync(frame);

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var (answer, _) = await ControlFrame.ReadAsync(stream, new byte[4], cts.Token);

        Assert.Equal(3, answer!.Value.Id);
        var error = Assert.IsType<ErrorReply>(answer.Value.Message);
        Assert.Equal(ErrorCode.BadRequest, error.Code);
        Assert.Contains("'pin1'", error.Message, StringComparison.Ordinal);

        await ControlFrame.WriteAsync(stream, 5, new UnlockRequest("1111", "2222"), cts.Token);
        var (next, _) = await ControlFrame.ReadAsync(stream, new byte[4], cts.Token);
        Assert.Equal(5, next!.Value.Id);
        Assert.IsType<UnlockedReply>(next.Value.Message);
    }

    [Fact]
    public async Task RelayData_FlowsBothWays_AndEarlyDataIsKept()
    {
        await using var client = new ControlConnection(_client.GetStream());
        client.Start();
        // The server side writes before the client opens the relay: the frames wait for it.
        await _server.SendAsync(0, new RelayData(4, "hello"u8.ToArray()), CancellationToken.None);
        await Task.Delay(100);
        await using var relay = client.OpenRelay(4);
        var buffer = new byte[5];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await relay.ReadExactlyAsync(buffer, cts.Token);
        Assert.Equal("hello"u8.ToArray(), buffer);
    }

    [Fact]
    public async Task DataForRelaysClosedLongAgo_IsNotKeptForever_WhileEarlyDataForANewRelayStillIs()
    {
        await using var client = new ControlConnection(_client.GetStream());
        client.Start();
        // A long-lived agent: 200 relays opened and closed, the market's last bytes for each arriving after the close.
        for (long id = 1; id <= 200; id++)
        {
            var relay = client.OpenRelay(id);
            await relay.DisposeAsync();
            await _server.SendAsync(0, new RelayData(id, "late"u8.ToArray()), CancellationToken.None);
        }
        await _server.SendAsync(0, new RelayData(201, "early"u8.ToArray()), CancellationToken.None);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        // Frames are read in order: once the new relay's data is there, every late frame was read before it.
        await using var fresh = client.OpenRelay(201);
        var buffer = new byte[5];
        await fresh.ReadExactlyAsync(buffer, cts.Token);
        Assert.Equal("early"u8.ToArray(), buffer);
        Assert.InRange(client.RelaysWaitingForOpen, 0, ControlProtocol.MaxRequestsInFlight);
    }

    /// <summary>
    /// daiko/1 keeps at most <see cref="ControlProtocol.MaxEarlyRelayFrames"/> frames for a relay still opening: past them
    /// the relay opens cut (its reader fails), never as a stream with a hole in it. Red before: the kept frames were read
    /// as if they were all the market sent.
    /// </summary>
    [Fact]
    public async Task EarlyFramesPastWhatDaiko1Keeps_OpenTheRelayCut_NotWithAHole()
    {
        await using var client = new ControlConnection(_client.GetStream());
        client.Start();
        for (var i = 0; i <= ControlProtocol.MaxEarlyRelayFrames; i++) await _server.SendAsync(0, new RelayData(7, "x"u8.ToArray()), CancellationToken.None);
        await _server.SendAsync(0, new RelayData(8, "mark"u8.ToArray()), CancellationToken.None);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using (var mark = client.OpenRelay(8))
        {
            await mark.ReadExactlyAsync(new byte[4], cts.Token);
        }

        await using var cut = client.OpenRelay(7);
        var e = await Assert.ThrowsAsync<IOException>(async () => await cut.CopyToAsync(Stream.Null, cts.Token));
        Assert.Contains("cut", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// More relays waiting to open than requests can be in flight: the oldest one's early data is dropped to keep the
    /// table bounded, and should that relay open after all, it opens cut; the others open whole. Red before: it opened as
    /// an empty stream waiting for the rest.
    /// </summary>
    [Fact]
    public async Task ARelayWhoseEarlyDataWasDroppedToKeepTheTableBounded_OpensCut_TheOthersWhole()
    {
        await using var client = new ControlConnection(_client.GetStream());
        client.Start();
        var last = ControlProtocol.MaxRequestsInFlight + 1L;
        for (long id = 1; id <= last; id++) await _server.SendAsync(0, new RelayData(id, "early"u8.ToArray()), CancellationToken.None);
        await _server.SendAsync(0, new RelayData(999, "mark"u8.ToArray()), CancellationToken.None);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var buffer = new byte[5];
        // Frames are read in order: once the mark is read, every relay's early data was read before it.
        await using (var mark = client.OpenRelay(999))
        {
            await mark.ReadExactlyAsync(new byte[4], cts.Token);
        }
        await using (var newest = client.OpenRelay(last))
        {
            await newest.ReadExactlyAsync(buffer, cts.Token);
            Assert.Equal("early"u8.ToArray(), buffer);
        }
        // The mark may have pushed out relay 2 as well (34 ids for 32 places); relay 3 is kept either way.
        await using (var third = client.OpenRelay(3))
        {
            await third.ReadExactlyAsync(buffer, cts.Token);
            Assert.Equal("early"u8.ToArray(), buffer);
        }

        await using var dropped = client.OpenRelay(1);
        await Assert.ThrowsAsync<IOException>(async () => await dropped.ReadExactlyAsync(buffer, cts.Token));
    }

    /// <summary>
    /// The control connection's end cuts the relays it carries: a reader gets an error, never a clean end it could take for
    /// the whole stream, and so does a relay opened once the connection has shut down (red before: its reader waited until
    /// cancelled). A relay whose end came first, before it opened, keeps its data and its clean end.
    /// </summary>
    [Fact]
    public async Task TheConnectionsEnd_CutsItsRelays_ThoseOpenedAfterItToo_ButARelayThatEndedFirstKeepsItsEnd()
    {
        await using var client = new ControlConnection(_client.GetStream());
        client.Start();
        await using var before = client.OpenRelay(1);
        await _server.SendAsync(0, new RelayData(3, "whole"u8.ToArray()), CancellationToken.None);
        await _server.SendAsync(0, new RelayClose(3), CancellationToken.None);
        await _server.SendAsync(0, new RelayData(4, "mark"u8.ToArray()), CancellationToken.None);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        // Frames are read in order: once relay 4's data is kept, relay 3's close was read before it.
        while (client.RelaysWaitingForOpen < 2) await Task.Delay(10, cts.Token);
        client.Close("the test closed it");
        // Its read loop ended too: nothing left runs that could end a relay opened now.
        await client.DisposeAsync();
        await using var after = client.OpenRelay(2);
        await using var ended = client.OpenRelay(3);

        var cut = await Assert.ThrowsAsync<IOException>(async () => await before.CopyToAsync(Stream.Null, cts.Token));
        Assert.Contains("the control channel closed before the relay ended", cut.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<IOException>(async () => await after.CopyToAsync(Stream.Null, cts.Token));
        var whole = new MemoryStream();
        await ended.CopyToAsync(whole, cts.Token);
        Assert.Equal("whole"u8.ToArray(), whole.ToArray());
    }

    [Fact]
    public async Task LateDataForAClosedRelay_DoesNotPushOutEarlyDataOfARelayStillOpening()
    {
        await using var client = new ControlConnection(_client.GetStream());
        client.Start();
        // Relay 1 waits for its opening reply while its first bytes are already here.
        await _server.SendAsync(0, new RelayData(1, "first"u8.ToArray()), CancellationToken.None);
        // Meanwhile relays with higher ids open, close, and keep receiving their market's late bytes.
        for (long id = 2; id <= 2 + ControlProtocol.MaxRequestsInFlight * 2; id++)
        {
            var relay = client.OpenRelay(id);
            await relay.DisposeAsync();
            await _server.SendAsync(0, new RelayData(id, "late"u8.ToArray()), CancellationToken.None);
        }
        await _server.SendAsync(0, new RelayData(999, "mark"u8.ToArray()), CancellationToken.None);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using (var mark = client.OpenRelay(999))
        {
            await mark.ReadExactlyAsync(new byte[4], cts.Token);
        }
        await using var opened = client.OpenRelay(1);
        var buffer = new byte[5];
        await opened.ReadExactlyAsync(buffer, cts.Token);
        Assert.Equal("first"u8.ToArray(), buffer);
    }
}
