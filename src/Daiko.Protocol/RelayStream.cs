using System.Threading.Channels;
using Daiko.Protocol.Messages;

namespace Daiko.Protocol;

/// <summary>A byte stream carried in relay-data frames of a control connection.</summary>
public sealed class RelayStream : Stream
{
    private readonly ControlConnection _connection;
    private readonly Channel<ReadOnlyMemory<byte>> _incoming = Channel.CreateUnbounded<ReadOnlyMemory<byte>>(new UnboundedChannelOptions { SingleReader = false });
    private ReadOnlyMemory<byte> _current;
    private bool _writeClosed;

    internal RelayStream(ControlConnection connection, long id)
    {
        _connection = connection;
        Id = id;
    }

    public long Id { get; }

    public string? EndReason { get; private set; }

    /// <summary>The reason a relay ends with when the far side's stream failed or was cut (not a clean end).</summary>
    public const string UncleanEnd = "unclean";

    private string? _closeReason;

    internal void Deliver(ReadOnlyMemory<byte> data)
    {
        if (!_incoming.Writer.TryWrite(data)) return;
        _connection.Buffered(data.Length);
    }

    /// <summary>Gives back what no reader will take any more (the relay was closed on this side).</summary>
    private void DropUnread()
    {
        while (_incoming.Reader.TryRead(out var left)) _connection.Consumed(left.Length);
    }

    internal void DeliverEnd(string? reason)
    {
        EndReason ??= reason;
        _incoming.Writer.TryComplete();
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

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_current.IsEmpty)
        {
            if (!await _incoming.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                // An unclean end is passed on as one: the reader must not take a cut stream for complete.
                if (EndReason == UncleanEnd) throw new IOException("the relayed connection was cut (no close_notify from the market)");
                return 0;
            }
            if (_incoming.Reader.TryRead(out _current)) _connection.Consumed(_current.Length);
        }
        var n = Math.Min(buffer.Length, _current.Length);
        _current.Span[..n].CopyTo(buffer.Span);
        _current = _current[n..];
        return n;
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_writeClosed) throw new IOException("the relay is closed");
        for (var i = 0; i < buffer.Length; i += ControlProtocol.MaxRelayChunk)
        {
            var chunk = buffer.Slice(i, Math.Min(ControlProtocol.MaxRelayChunk, buffer.Length - i));
            try
            {
                await _connection.SendAsync(0, new RelayData(Id, chunk), cancellationToken).ConfigureAwait(false);
            }
            catch (ControlErrorException e)
            {
                throw new IOException(e.Message, e);
            }
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
            DropUnread();
            _connection.SendOwned(new RelayClose(Id, _closeReason));
        }
        base.Dispose(disposing);
    }
}
