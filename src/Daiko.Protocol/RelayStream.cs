using System.Threading.Channels;
using Daiko.Protocol.Messages;

namespace Daiko.Protocol;

/// <summary>
/// A byte stream carried in relay-data frames of a control connection. In daiko/2 each direction has a
/// window (<see cref="ControlProtocol.RelayWindowBytes"/>): a write waits while the peer holds that much of
/// this relay unread, and what the reader here takes is granted back to the peer in <c>relay-window</c> frames.
/// </summary>
public sealed class RelayStream : Stream
{
    private readonly ControlConnection _connection;
    private readonly Channel<ReadOnlyMemory<byte>> _incoming = Channel.CreateUnbounded<ReadOnlyMemory<byte>>(new UnboundedChannelOptions { SingleReader = false });
    private readonly ReceiveWindow? _window;
    private readonly SendCredit? _credit;
    private ReadOnlyMemory<byte> _current;
    private bool _writeClosed;

    /// <param name="window">daiko/2: what the peer may send (charged already with the data that came before the relay opened); null in daiko/1.</param>
    internal RelayStream(ControlConnection connection, long id, ReceiveWindow? window)
    {
        _connection = connection;
        Id = id;
        _window = window;
        _credit = window is null ? null : new SendCredit(ControlProtocol.RelayWindowBytes);
    }

    public long Id { get; }

    public string? EndReason { get; private set; }

    /// <summary>The reason a relay ends with when the far side's stream failed or was cut (not a clean end).</summary>
    public const string UncleanEnd = "unclean";

    /// <summary>This side's reason (never sent): data sent before the relay opened was dropped, so what is kept is not the whole stream.</summary>
    internal const string LostEnd = "lost before it opened";

    /// <summary>This side's reason (never sent): the control connection ended before the relay did.</summary>
    internal const string ChannelEnd = "channel closed";

    /// <summary>In daiko/2, the bytes received on this relay that its reader has not taken yet (at most the window); 0 in daiko/1.</summary>
    public long BufferedBytes => _window?.Held ?? 0;

    private string? _closeReason;

    /// <summary>Data from the peer; false when it goes past the relay's window (the connection then refuses the peer).</summary>
    internal bool Deliver(ReadOnlyMemory<byte> data)
    {
        if (_window is { } window && !window.Arrive(data.Length)) return false;
        Enqueue(data);
        return true;
    }

    /// <summary>Data already charged to the window (it came before the relay opened).</summary>
    internal void Enqueue(ReadOnlyMemory<byte> data)
    {
        // An empty chunk carries nothing for the reader: it is not kept.
        if (data.IsEmpty || !_incoming.Writer.TryWrite(data)) return;
        if (_window is null) _connection.Buffered(data.Length);
    }

    /// <summary>The peer granted more of its window (daiko/2); false when the grant is more than it could have read.</summary>
    internal bool Grant(long bytes) => _credit?.Grant(bytes) ?? false;

    /// <summary>Gives back what no reader will take any more (the relay was closed on this side).</summary>
    private void DropUnread()
    {
        while (_incoming.Reader.TryRead(out var left))
        {
            if (_window is null) _connection.Consumed(left.Length);
        }
    }

    private int _ended;

    /// <summary>The relay's end, with its reason: the first one delivered is the end (a clean close stays clean however the channel ends after it).</summary>
    internal void DeliverEnd(string? reason)
    {
        if (Interlocked.Exchange(ref _ended, 1) == 0) EndReason = reason;
        _incoming.Writer.TryComplete();
        _credit?.End();
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>Relays are asynchronous only: a blocking read would hold a thread on the control channel.</summary>
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("a relay stream is read asynchronously");

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("a relay stream is written asynchronously");

    private static string? CutSentence(string? reason) => reason switch
    {
        UncleanEnd => "the relayed connection was cut (no close_notify from the market)",
        LostEnd => "the relay was cut: data sent for it before it opened was more than is kept for a relay still opening",
        ChannelEnd => "the relay was cut: the control channel closed before the relay ended",
        _ => null,
    };

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_current.IsEmpty)
        {
            if (!await _incoming.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                // An unclean end is passed on as one: the reader must not take a cut stream for complete.
                if (CutSentence(EndReason) is { } cut) throw new IOException(cut);
                return 0;
            }
            // In daiko/1 a chunk is given back to the connection's budget when it is taken off the queue;
            // in daiko/2 the window is granted back as the caller takes the bytes (below).
            if (_incoming.Reader.TryRead(out _current) && _window is null) _connection.Consumed(_current.Length);
        }
        var n = Math.Min(buffer.Length, _current.Length);
        _current.Span[..n].CopyTo(buffer.Span);
        _current = _current[n..];
        if (_window is { } window && window.Take(n) is > 0 and var grant) _connection.Track(SendGrantsAsync(window, grant));
        return n;
    }

    /// <summary>Writes grants one after another while the reader makes them due: one write at a time for this relay, however far behind the channel's writes are.</summary>
    private async Task SendGrantsAsync(ReceiveWindow window, long grant)
    {
        try
        {
            while (grant > 0 && !_writeClosed)
            {
                try
                {
                    await _connection.SendAsync(0, new RelayWindow(Id, grant), _connection.Closed).ConfigureAwait(false);
                }
                finally
                {
                    grant = window.Sent();
                }
            }
        }
        catch (Exception e) when (e is ControlErrorException or OperationCanceledException)
        {
            // The channel is gone, and with it the relay the grant was for.
        }
    }

    /// <summary>
    /// Sends <paramref name="buffer"/> in relay-data chunks. In daiko/2 each chunk waits for the peer's window:
    /// <paramref name="cancellationToken"/> ends the wait, and so does the relay's end. Once the peer has closed
    /// the relay, what it has no room for is dropped, as the peer would drop it; a connection that closed fails
    /// the write.
    /// </summary>
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_writeClosed) throw new IOException("the relay is closed");
        var sent = 0;
        while (sent < buffer.Length)
        {
            var wanted = Math.Min(ControlProtocol.MaxRelayChunk, buffer.Length - sent);
            var size = _credit is null ? wanted : await _credit.TakeAsync(wanted, cancellationToken).ConfigureAwait(false);
            if (size == 0)
            {
                if (_writeClosed) throw new IOException("the relay is closed");
                if (_connection.Closed.IsCancellationRequested) throw new IOException($"the control channel closed: {_connection.CloseReason ?? "connection closed"}");
                return;
            }
            try
            {
                await _connection.SendAsync(0, new RelayData(Id, buffer.Slice(sent, size)), cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Cancelled while waiting for the channel: nothing of the chunk was sent.
                _credit?.Return(size);
                throw;
            }
            catch (ControlErrorException e)
            {
                throw new IOException(e.Message, e);
            }
            sent += size;
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <summary>Ends the relay as cut (the other side sees an error, not an end of stream), then disposes it.</summary>
    public ValueTask AbortAsync()
    {
        _closeReason = UncleanEnd;
        return DisposeAsync();
    }

    /// <summary>Tells the other side the stream ended, then stops reading.</summary>
    public override async ValueTask DisposeAsync()
    {
        if (!_writeClosed)
        {
            _writeClosed = true;
            _connection.ForgetRelay(Id);
            _incoming.Writer.TryComplete();
            _credit?.End();
            DropUnread();
            try
            {
                await _connection.SendAsync(0, new RelayClose(Id, _closeReason), CancellationToken.None).ConfigureAwait(false);
            }
            catch (ControlErrorException)
            {
                // The control channel is gone, and with it the other end of this relay.
            }
        }
        await base.DisposeAsync().ConfigureAwait(false);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_writeClosed)
        {
            // Synchronous disposal cannot wait for relay-close: the connection sends it and owns the send.
            _writeClosed = true;
            _connection.ForgetRelay(Id);
            _incoming.Writer.TryComplete();
            _credit?.End();
            DropUnread();
            _connection.SendOwned(new RelayClose(Id, _closeReason));
        }
        base.Dispose(disposing);
    }
}
