using System.Net.Sockets;
using Daiko.Protocol.Messages;
using Daiko.Protocol.Wire;
using Daiko.TestSupport;

namespace Daiko.Protocol.Tests;

/// <summary>
/// daiko/2's relay windows over a loopback TCP pair: a relay nobody reads holds only its own window, never
/// the channel's other relays and requests, and gives every byte once it is read; a peer that sends past its
/// credit is refused.
/// </summary>
public sealed class RelayWindowTests : IAsyncLifetime
{
    private const int Window = ControlProtocol.RelayWindowBytes;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private TcpClient _near = null!;
    private TcpClient _far = null!;
    private ControlConnection _home = null!;
    private ControlConnection _terminal = null!;

    public async Task InitializeAsync()
    {
        (_near, _far) = await Loopback.ConnectedPairAsync();
        _home = new ControlConnection(_far.GetStream(), (request, c) => c.ReplyAsync(request, new UnlockedReply(CardState.CryptoReady)))
        {
            Version = ControlProtocol.Alpn,
            RefusesUnopenedRelays = true,
        };
        _terminal = new ControlConnection(_near.GetStream()) { Version = ControlProtocol.Alpn };
        _home.Start();
        _terminal.Start();
    }

    public async Task DisposeAsync()
    {
        await _terminal.DisposeAsync();
        await _home.DisposeAsync();
        _near.Dispose();
        _far.Dispose();
    }

    /// <summary>Bytes whose every position says where it is in the stream (a lost or reordered chunk shows).</summary>
    private static byte[] Pattern(int length, int from = 0)
    {
        var bytes = new byte[length];
        for (var i = 0; i < length; i++) bytes[i] = (byte)((from + i) % 251);
        return bytes;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, CancellationToken ct)
    {
        while (!condition()) await Task.Delay(20, ct);
    }

    [Fact]
    public async Task ARelayNobodyReads_HoldsOnlyItsWindow_WhileTheOtherRelayAndRequestsFlow_AndThenGivesEveryByteInOrder()
    {
        using var cts = new CancellationTokenSource(Bound * 2);
        const int Total = 8 << 20;
        var unreadFar = _home.OpenRelay(2);
        var otherFar = _home.OpenRelay(4);
        var unread = _terminal.OpenRelay(2);
        var other = _terminal.OpenRelay(4);

        // The market behind relay 2 sends 8 MiB that the terminal's program never reads.
        var writer = Task.Run(async () =>
        {
            var data = Pattern(Total);
            for (var i = 0; i < Total; i += 16384) await unreadFar.WriteAsync(data.AsMemory(i, 16384), cts.Token);
            await unreadFar.DisposeAsync();
        }, cts.Token);

        // The same channel's other relay carries bytes both ways, and requests are answered.
        using (var step = CancellationTokenSource.CreateLinkedTokenSource(cts.Token))
        {
            step.CancelAfter(Bound);
            await otherFar.WriteAsync("ping"u8.ToArray(), step.Token);
            var ping = new byte[4];
            await other.ReadExactlyAsync(ping, step.Token);
            await other.WriteAsync("pong"u8.ToArray(), step.Token);
            var pong = new byte[4];
            await otherFar.ReadExactlyAsync(pong, step.Token);
            Assert.Equal(("ping", "pong"), (System.Text.Encoding.ASCII.GetString(ping), System.Text.Encoding.ASCII.GetString(pong)));
            for (var i = 0; i < 3; i++) Assert.IsType<UnlockedReply>(await _terminal.RequestAsync(new UnlockRequest("1111", "2222"), step.Token));

            // The unread relay's writer is held at the window: the terminal holds exactly that much of it, the
            // connection's budget none of it, and the writer waits.
            await WaitUntilAsync(() => unread.BufferedBytes == Window, step.Token);
        }
        Assert.False(writer.IsCompleted);
        Assert.Equal(Window, unread.BufferedBytes);
        Assert.Equal(0, _terminal.BufferedBytes);

        // Once its reader starts, every byte arrives, in order, and the relay ends cleanly; the window is never exceeded.
        var received = new byte[Total];
        var read = 0;
        int n;
        while ((n = await unread.ReadAsync(received.AsMemory(read, Math.Min(100_000, Total - read)), cts.Token)) > 0)
        {
            read += n;
            Assert.InRange(unread.BufferedBytes, 0, Window);
            if (read == Total) break;
        }
        Assert.Equal(Total, read);
        Assert.Equal(0, await unread.ReadAsync(new byte[1], cts.Token));
        Assert.Equal(Pattern(Total), received);
        await writer.WaitAsync(cts.Token);
    }

    [Fact]
    public async Task EarlyData_CountsAgainstTheWindow_AndArrivesWhole_WhenTheRelayOpens()
    {
        using var cts = new CancellationTokenSource(Bound);
        const int Total = Window + 100_000;
        var far = _home.OpenRelay(6);
        // The terminal has not opened relay 6 yet (its opening reply is on its way): the writer stops at the window.
        var writer = far.WriteAsync(Pattern(Total), cts.Token).AsTask();
        await WaitUntilAsync(() => _terminal.RelaysWaitingForOpen == 1, cts.Token);
        await _terminal.RequestAsync(new UnlockRequest("1111", "2222"), cts.Token);
        Assert.False(writer.IsCompleted);

        await using var near = _terminal.OpenRelay(6);
        var received = new byte[Total];
        await near.ReadExactlyAsync(received, cts.Token);
        Assert.Equal(Pattern(Total), received);
        await writer;
    }

    [Fact]
    public async Task AWriterWaitingForTheWindow_EndsWhenCancelled_WithNothingOfItSent()
    {
        using var cts = new CancellationTokenSource(Bound);
        var far = _home.OpenRelay(8);
        var near = _terminal.OpenRelay(8);
        await far.WriteAsync(Pattern(Window), cts.Token);

        using (var give = new CancellationTokenSource(TimeSpan.FromMilliseconds(200)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await far.WriteAsync(Pattern(10, Window), give.Token));
        }
        // Reading gives the window back: the next write goes, and the stream has no hole where the cancelled one was.
        var write = far.WriteAsync(Pattern(10, Window), cts.Token).AsTask();
        var received = new byte[Window + 10];
        await near.ReadExactlyAsync(received, cts.Token);
        await write;
        Assert.Equal(Pattern(Window + 10), received);
    }

    [Fact]
    public async Task AWriterWaitingForTheWindow_EndsWhenTheOtherSideClosesTheRelay_OrTheConnectionCloses()
    {
        using var cts = new CancellationTokenSource(Bound);
        var far = _home.OpenRelay(10);
        var near = _terminal.OpenRelay(10);
        var dropped = far.WriteAsync(Pattern(Window * 2), cts.Token).AsTask();
        await WaitUntilAsync(() => near.BufferedBytes == Window, cts.Token);
        // The far side closed its end: what it has no room for would be dropped there, so it is dropped here.
        await near.DisposeAsync();
        await dropped.WaitAsync(cts.Token);

        var held = _home.OpenRelay(12);
        var nearHeld = _terminal.OpenRelay(12);
        var cut = held.WriteAsync(Pattern(Window * 2), cts.Token).AsTask();
        await WaitUntilAsync(() => nearHeld.BufferedBytes == Window, cts.Token);
        _home.Close("the test ends the channel");
        var e = await Assert.ThrowsAsync<IOException>(() => cut.WaitAsync(cts.Token));
        Assert.Contains("the test ends the channel", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARelayReader_GrantsTheWindowBackInHalves_NotOneFrameARead()
    {
        using var cts = new CancellationTokenSource(Bound);
        const int Total = 4 << 20;
        var far = _home.OpenRelay(14);
        await using var near = _terminal.OpenRelay(14);
        var sentBefore = _terminal.BytesSent;
        var writer = far.WriteAsync(Pattern(Total), cts.Token).AsTask();
        var buffer = new byte[1000];
        for (var read = 0; read < Total;) read += await near.ReadAsync(buffer, cts.Token);
        await writer;

        // One grant per half window read: 32 for 4 MiB, each a frame of a few dozen bytes.
        Assert.InRange(_terminal.BytesSent - sentBefore, 32 * 20, 32 * 60);
    }

    [Fact]
    public async Task DataPastTheCredit_IsRefusedWithAClearError_NotBuffered()
    {
        foreach (var opened in new[] { true, false })
        {
            var (near, far) = await Loopback.ConnectedPairAsync();
            using (near)
            using (far)
            {
                await using var terminal = new ControlConnection(near.GetStream()) { Version = ControlProtocol.Alpn };
                terminal.Start();
                // Opened, or still opening (early data): either way the window holds.
                if (opened) terminal.OpenRelay(3);
                var raw = far.GetStream();
                using var cts = new CancellationTokenSource(Bound);
                for (var i = 0; i < Window / ControlProtocol.MaxRelayChunk + 1; i++)
                {
                    await ControlFrame.WriteAsync(raw, 0, new RelayData(3, new byte[ControlProtocol.MaxRelayChunk]), cts.Token);
                }

                var refusal = await ReadRefusalAsync(raw, cts.Token);
                Assert.Equal(ErrorCode.BadRequest, refusal.Code);
                Assert.Contains("relay 3 received data past its window", refusal.Message, StringComparison.Ordinal);
                await terminal.Completion.WaitAsync(cts.Token);
                Assert.Contains("past its window", terminal.CloseReason, StringComparison.Ordinal);
                Assert.Equal(0, terminal.BufferedBytes);
            }
        }
    }

    [Fact]
    public async Task AGrantOfMoreThanWasSent_IsRefused_AndOnDaiko1ARelayWindowFrameIsNotUnderstood()
    {
        foreach (var version in new[] { ControlProtocol.Alpn, ControlProtocol.Alpn1 })
        {
            var (near, far) = await Loopback.ConnectedPairAsync();
            using (near)
            using (far)
            {
                await using var home = new ControlConnection(near.GetStream(), (r, c) => Task.CompletedTask) { Version = version, RefusesUnopenedRelays = true };
                home.Start();
                home.OpenRelay(1);
                var raw = far.GetStream();
                using var cts = new CancellationTokenSource(Bound);
                await ControlFrame.WriteAsync(raw, 0, new RelayWindow(1, 1000), cts.Token);

                await home.Completion.WaitAsync(cts.Token);
                Assert.Contains(version == ControlProtocol.Alpn ? "grants more than was sent on it" : "control protocol daiko/1 has no 'relay-window'", home.CloseReason, StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public async Task OnDaiko1_ThereIsNoWindow_AndNoRelayWindowFrame()
    {
        var (near, far) = await Loopback.ConnectedPairAsync();
        using (near)
        using (far)
        {
            await using var home = new ControlConnection(far.GetStream(), (r, c) => Task.CompletedTask) { RefusesUnopenedRelays = true };
            await using var terminal = new ControlConnection(near.GetStream());
            home.Start();
            terminal.Start();
            using var cts = new CancellationTokenSource(Bound);
            var homeRelay = home.OpenRelay(2);
            var terminalRelay = terminal.OpenRelay(2);
            // More than a window goes at once, with no grant: the connection's budget holds it until it is read.
            await homeRelay.WriteAsync(Pattern(Window * 2), cts.Token);
            await WaitUntilAsync(() => terminal.BufferedBytes == Window * 2, cts.Token);
            Assert.Equal(0, terminalRelay.BufferedBytes);
            var sent = terminal.BytesSent;
            var received = new byte[Window * 2];
            await terminalRelay.ReadExactlyAsync(received, cts.Token);
            Assert.Equal(Pattern(Window * 2), received);
            Assert.Equal(sent, terminal.BytesSent);
            Assert.Equal(0, terminal.BufferedBytes);
        }
    }

    /// <summary>
    /// Data for a relay still opening, in far more frames than daiko/1 keeps (a market sending tiny records), and its
    /// close: every byte arrives, in order, then the end. Red before: past 256 frames the rest were dropped (and their
    /// bytes granted back), leaving a hole in the stream and no end.
    /// </summary>
    [Fact]
    public async Task EarlyData_InMoreFramesThanDaiko1Keeps_ArrivesWholeInOrder_WithItsEnd()
    {
        var (near, far) = await Loopback.ConnectedPairAsync();
        using (near)
        using (far)
        {
            await using var terminal = new ControlConnection(near.GetStream()) { Version = ControlProtocol.Alpn };
            terminal.Start();
            var raw = far.GetStream();
            using var cts = new CancellationTokenSource(Bound);
            const int Frames = 1_000, Each = 100;
            var pattern = Pattern(Frames * Each);
            for (var i = 0; i < Frames; i++) await ControlFrame.WriteAsync(raw, 0, new RelayData(9, pattern.AsMemory(i * Each, Each)), cts.Token);
            await ControlFrame.WriteAsync(raw, 0, new RelayClose(9), cts.Token);
            await WaitUntilAsync(() => terminal.RelaysWaitingForOpen == 1, cts.Token);
            await Task.Delay(200, cts.Token);

            await using var relay = terminal.OpenRelay(9);
            var received = new MemoryStream();
            await relay.CopyToAsync(received, cts.Token);
            Assert.Equal(pattern, received.ToArray());
        }
    }

    /// <summary>
    /// A peer that stops reading this side's writes never receives a grant: it may send the window, and the one grant
    /// this side has begun to write, and no more, however fast this side's reader drains the relay; past that it is
    /// refused, and the connection, its stuck writes included, ends at once. Red before: each half window the reader took
    /// was allowed at once and queued its own grant behind the stuck write, so the peer could send without end while
    /// grants piled up, and closing then waited a second for each.
    /// </summary>
    [Fact]
    public async Task APeerThatReadsNothing_CanSendTheWindowAndOneGrant_NoMore_AndNoGrantsPileUp()
    {
        var (near, far) = await Loopback.ConnectedPairAsync();
        using (near)
        using (far)
        {
            await using var home = new ControlConnection(new StuckWrites(far.GetStream())) { Version = ControlProtocol.Alpn, RefusesUnopenedRelays = true };
            home.Start();
            var relay = home.OpenRelay(5);
            long drained = 0;
            var drain = Task.Run(async () =>
            {
                var buffer = new byte[ControlProtocol.MaxRelayChunk];
                try
                {
                    for (int n; (n = await relay.ReadAsync(buffer)) > 0;) Interlocked.Add(ref drained, n);
                }
                catch (IOException)
                {
                    // The connection was refused: the relay ends with it.
                }
            });
            var raw = near.GetStream();
            using var cts = new CancellationTokenSource(Bound);
            var chunk = new byte[ControlProtocol.MaxRelayChunk];
            var sent = 0L;
            try
            {
                // Each chunk waits until the reader drained what came before, so the peer never runs ahead of the reader.
                while (sent < 4L * 1024 * 1024 && !home.Closed.IsCancellationRequested)
                {
                    await ControlFrame.WriteAsync(raw, 0, new RelayData(5, chunk), cts.Token);
                    sent += chunk.Length;
                    await WaitUntilAsync(() => Interlocked.Read(ref drained) >= sent || home.Closed.IsCancellationRequested, cts.Token);
                }
            }
            catch (IOException)
            {
                // The home closed the connection while the peer was still sending.
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            await home.Completion.WaitAsync(cts.Token);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"closing took {clock.Elapsed}");
            Assert.Contains("past its window", home.CloseReason, StringComparison.Ordinal);
            // The window, and the one grant of half of it begun (stuck) before the peer went on: then the refusal.
            Assert.Equal(Window + Window / 2, Interlocked.Read(ref drained));
            await drain.WaitAsync(cts.Token);
        }
    }

    /// <summary>A stream whose writes never finish until it is disposed (a peer that stopped reading, its socket buffers full).</summary>
    private sealed class StuckWrites(Stream inner) : Stream
    {
        private readonly TaskCompletionSource _disposed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => _disposed.Task.GetAwaiter().GetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await _disposed.Task.WaitAsync(cancellationToken);
            throw new ObjectDisposedException(nameof(StuckWrites));
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _disposed.TrySetResult();
                inner.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    /// <summary>Reads frames until the one that refuses the whole connection (id 0).</summary>
    private static async Task<ErrorReply> ReadRefusalAsync(Stream stream, CancellationToken ct)
    {
        var header = new byte[4];
        while (true)
        {
            var (frame, _) = await ControlFrame.ReadAsync(stream, header, ct);
            Assert.NotNull(frame);
            if (frame.Value is { Id: 0, Message: ErrorReply refusal }) return refusal;
        }
    }
}
