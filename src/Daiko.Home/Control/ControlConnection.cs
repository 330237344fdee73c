using System.Collections.Concurrent;
using System.Threading.Channels;

namespace Daiko.Home.Control;

/// <summary>An "error" reply: a code a program can act on and a sentence a person can.</summary>
public sealed class ControlErrorException(string code, string message, long? triesLeft = null) : Exception(message)
{
    public string Code { get; } = code;

    public long? TriesLeft { get; } = triesLeft;
}

/// <summary>
/// A multiplexed control connection over any stream (TLS to the home server, or the terminal agent's
/// Unix socket): requests and replies matched by id, plus relay channels that carry a byte stream in
/// "relay-data" frames. One reader loop; writes serialized.
/// </summary>
public sealed class ControlConnection : IAsyncDisposable
{
    private readonly Stream _stream;
    private readonly Func<ControlMessage, ControlConnection, Task>? _onRequest;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<long, TaskCompletionSource<ControlMessage>> _pending = new();
    private readonly ConcurrentDictionary<long, RelayStream> _relays = new();
    private readonly CancellationTokenSource _closed = new();
    private long _nextId;
    private Task? _readLoop;

    public ControlConnection(Stream stream, Func<ControlMessage, ControlConnection, Task>? onRequest = null, bool evenIds = false)
    {
        _stream = stream;
        _onRequest = onRequest;
        _nextId = evenIds ? 0 : 1;
    }

    /// <summary>Bytes written and read on the underlying stream (control_bytes in --stats).</summary>
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    private long _bytesSent;
    private long _bytesReceived;

    public CancellationToken Closed => _closed.Token;

    public string? CloseReason { get; private set; }

    /// <summary>The error code the other side gave when it refused the whole connection (e.g. "revoked").</summary>
    public string? CloseCode { get; private set; }

    public Task Completion => _readLoop ?? Task.CompletedTask;

    public void Start() => _readLoop = ReadLoopAsync();

    private async Task ReadLoopAsync()
    {
        try
        {
            while (!_closed.IsCancellationRequested)
            {
                var (message, bytes) = await ControlMessage.ReadCountedFrameAsync(_stream, _closed.Token);
                if (message is null) break;
                Interlocked.Add(ref _bytesReceived, bytes);
                if (message.Type == "relay-data" || message.Type == "relay-close")
                {
                    var relayId = message.GetInt("relay");
                    lock (_early)
                    {
                        if (!_relays.TryGetValue(relayId, out var relay))
                        {
                            // Data for a relay whose opening reply is still on its way: keep it (bounded).
                            if (!_early.TryGetValue(relayId, out var queue)) _early[relayId] = queue = new List<ControlMessage>();
                            if (queue.Count < 256) queue.Add(message);
                            continue;
                        }
                        if (message.Type == "relay-data") relay.Deliver(message.GetBytes("data"));
                        else relay.DeliverEnd(message.GetStringOrNull("reason"));
                    }
                    continue;
                }
                if (message.Type == "error" && message.Id == 0)
                {
                    // The other side refuses the whole connection (unknown or revoked device).
                    CloseReason = message.GetStringOrNull("message");
                    CloseCode = message.GetStringOrNull("code");
                    break;
                }
                if (message.Has("re") && _pending.TryRemove(message.Id, out var waiter))
                {
                    waiter.TrySetResult(message);
                    continue;
                }
                if (_onRequest is not null)
                {
                    _ = HandleAsync(message);
                }
            }
            CloseReason ??= "the other side closed the control channel";
        }
        catch (Exception e) when (e is IOException or ProtocolException or OperationCanceledException or ObjectDisposedException or System.Security.Authentication.AuthenticationException)
        {
            CloseReason ??= e is ProtocolException ? e.Message : "the control channel was lost";
        }
        finally
        {
            Shutdown();
        }
    }

    private async Task HandleAsync(ControlMessage message)
    {
        try
        {
            await _onRequest!(message, this);
        }
        catch (Exception e)
        {
            try { await ReplyErrorAsync(message, "internal", e is ControlErrorException c ? c.Message : "the home server failed to handle the request"); }
            catch (Exception) { }
        }
    }

    /// <summary>Sends a request and waits for its reply; an "error" reply becomes <see cref="ControlErrorException"/>.</summary>
    public async Task<ControlMessage> RequestAsync(ControlMessage request, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        request.Id = Interlocked.Add(ref _nextId, 2);
        var waiter = new TaskCompletionSource<ControlMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[request.Id] = waiter;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token);
        cts.CancelAfter(timeout ?? TimeSpan.FromSeconds(60));
        try
        {
            await SendAsync(request, cts.Token);
            var reply = await waiter.Task.WaitAsync(cts.Token);
            if (reply.Type == "error")
            {
                throw new ControlErrorException(reply.GetString("code"), reply.GetString("message"), reply.Has("tries_left") ? reply.GetInt("tries_left") : null);
            }
            return reply;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ControlErrorException(CloseCode ?? "unavailable", _closed.IsCancellationRequested
                ? $"the home server closed the control channel: {CloseReason ?? "connection closed"}"
                : "the home server did not answer in time");
        }
        finally
        {
            _pending.TryRemove(request.Id, out _);
        }
    }

    public async ValueTask SendAsync(ControlMessage message, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            Interlocked.Add(ref _bytesSent, await ControlMessage.WriteFrameAsync(_stream, message, cancellationToken));
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // A refusal frame may have arrived just before the write failed: let the reader see it,
            // so that the caller learns "revoked" rather than "unreachable".
            if (_readLoop is { } reader) await Task.WhenAny(reader, Task.Delay(TimeSpan.FromSeconds(1), CancellationToken.None));
            if (CloseCode is not null)
            {
                throw new ControlErrorException(CloseCode, $"the home server closed the control channel: {CloseReason}");
            }
            CloseReason ??= "the control channel was lost";
            Shutdown();
            throw new ControlErrorException("unavailable", "the home server is unreachable: the control channel was lost");
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public Task ReplyAsync(ControlMessage request, ControlMessage reply)
    {
        reply.Id = request.Id;
        reply.Set("re", true);
        return SendAsync(reply, _closed.Token).AsTask();
    }

    public Task ReplyErrorAsync(ControlMessage request, string code, string message, long? triesLeft = null)
    {
        var reply = new ControlMessage("error").Set("code", code).Set("message", message);
        if (triesLeft is not null) reply.Set("tries_left", triesLeft.Value);
        return ReplyAsync(request, reply);
    }

    /// <summary>A byte stream multiplexed on this connection under <paramref name="relayId"/>.</summary>
    public RelayStream OpenRelay(long relayId)
    {
        var relay = new RelayStream(this, relayId);
        lock (_early)
        {
            _relays[relayId] = relay;
            if (_early.Remove(relayId, out var queued))
            {
                foreach (var message in queued)
                {
                    if (message.Type == "relay-data") relay.Deliver(message.GetBytes("data"));
                    else relay.DeliverEnd(message.GetStringOrNull("reason"));
                }
            }
        }
        return relay;
    }

    private readonly Dictionary<long, List<ControlMessage>> _early = new();

    internal void ForgetRelay(long relayId) => _relays.TryRemove(relayId, out _);

    /// <summary>Closes the connection (e.g. the device was revoked).</summary>
    public void Close(string reason)
    {
        CloseReason ??= reason;
        Shutdown();
    }

    private void Shutdown()
    {
        if (!_closed.IsCancellationRequested)
        {
            try { _closed.Cancel(); } catch (ObjectDisposedException) { }
        }
        foreach (var waiter in _pending.Values) waiter.TrySetCanceled();
        foreach (var relay in _relays.Values) relay.DeliverEnd(CloseReason);
        try { _stream.Dispose(); } catch (Exception) { }
    }

    public async ValueTask DisposeAsync()
    {
        Shutdown();
        if (_readLoop is not null)
        {
            try { await _readLoop; } catch (Exception) { }
        }
    }
}

/// <summary>A byte stream carried in relay-data frames of a control connection.</summary>
public sealed class RelayStream : Stream
{
    private readonly ControlConnection _connection;
    private readonly Channel<byte[]> _incoming = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
    private byte[] _current = [];
    private int _offset;
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

    internal void Deliver(byte[] data) => _incoming.Writer.TryWrite(data);

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
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_offset >= _current.Length)
        {
            if (!await _incoming.Reader.WaitToReadAsync(cancellationToken))
            {
                // An unclean end is passed on as one: the reader must not take a cut stream for complete.
                if (EndReason == UncleanEnd) throw new IOException("the relayed connection was cut (no close_notify from the market)");
                return 0;
            }
            if (_incoming.Reader.TryRead(out var next))
            {
                _current = next;
                _offset = 0;
            }
        }
        var n = Math.Min(buffer.Length, _current.Length - _offset);
        _current.AsSpan(_offset, n).CopyTo(buffer.Span);
        _offset += n;
        return n;
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_writeClosed) throw new IOException("the relay is closed");
        for (var i = 0; i < buffer.Length; i += 64 * 1024)
        {
            var chunk = buffer.Slice(i, Math.Min(64 * 1024, buffer.Length - i)).ToArray();
            try
            {
                await _connection.SendAsync(new ControlMessage("relay-data").Set("relay", Id).Set("data", chunk), cancellationToken);
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

    private string? _closeReason;

    /// <summary>Ends the relay as cut (the other side sees an error, not an end of stream), then disposes it.</summary>
    public void Abort()
    {
        _closeReason = UncleanEnd;
        Dispose();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_writeClosed)
        {
            _writeClosed = true;
            _connection.ForgetRelay(Id);
            _ = _connection.SendAsync(new ControlMessage("relay-close").Set("relay", Id).Set("reason", _closeReason), CancellationToken.None).AsTask().ContinueWith(_ => { }, TaskScheduler.Default);
            _incoming.Writer.TryComplete();
        }
        base.Dispose(disposing);
    }
}
