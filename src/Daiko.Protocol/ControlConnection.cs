using System.Collections.Concurrent;
using Daiko.Protocol.Messages;
using Daiko.Protocol.Wire;

namespace Daiko.Protocol;

/// <summary>A request as the receiving side sees it: the id its reply must carry, and the typed message.</summary>
public readonly record struct ControlRequest(long Id, ControlMessage Message);

/// <summary>
/// A multiplexed control connection over any stream (TLS to the home server, or the terminal agent's
/// Unix socket): typed requests and replies matched by id, plus relay channels that carry a byte
/// stream in relay-data frames. One reader loop; writes serialized. A request that cannot be decoded
/// is answered with <c>bad-request</c> naming the field, and the connection goes on. In daiko/2
/// (<see cref="Version"/>) each relay direction has its own window, so a relay whose reader stops holds
/// only its own data, never the reader loop that every request and relay shares.
/// </summary>
public sealed partial class ControlConnection : IAsyncDisposable
{
    private readonly Stream _stream;
    private readonly Func<ControlRequest, ControlConnection, Task>? _onRequest;
    private readonly Action<Exception>? _onHandlerFault;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<long, TaskCompletionSource<ControlMessage>> _pending = new();
    private readonly ConcurrentDictionary<long, RelayStream> _relays = new();
    private readonly Dictionary<long, EarlyRelay> _early = new();
    private readonly ConcurrentDictionary<long, Daiko.Tls.TlsCounters> _requestMeters = new();
    private readonly ConcurrentDictionary<long, Daiko.Tls.TlsCounters> _relayMeters = new();
    private readonly TaskSet _handlers = new();
    private readonly CancellationTokenSource _closed = new();
    private readonly ReadBudget _budget = new(ControlProtocol.MaxBufferedBytes, ControlProtocol.MaxRequestsInFlight);
    private (long Id, ErrorReply Reply)? _parting;
    private long _highestRelayOpened;
    private long _nextId = 1;
    private long _bytesSent;
    private long _bytesReceived;
    private Task? _readLoop;

    /// <param name="onRequest">Handles each incoming request (the home server); null on the terminal side.</param>
    /// <param name="onHandlerFault">Told about a handler that failed unexpectedly (it was answered <c>internal</c>).</param>
    public ControlConnection(Stream stream, Func<ControlRequest, ControlConnection, Task>? onRequest = null, Action<Exception>? onHandlerFault = null)
    {
        _stream = stream;
        _onRequest = onRequest;
        _onHandlerFault = onHandlerFault;
    }

    /// <summary>
    /// The counters of the TLS connection underneath, when there is one: bytes are then counted on the
    /// wire (records, with their headers and tags) rather than as frames.
    /// </summary>
    public Daiko.Tls.TlsCounters? Wire { get; init; }

    /// <summary>Called for a notification from the other side that is neither relay data nor a request (e.g. drop-tickets).</summary>
    public Action<ControlMessage>? OnNotice { get; init; }

    /// <summary>Bytes written and read on the underlying stream (on the wire when <see cref="Wire"/> is set).</summary>
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    public CancellationToken Closed => _closed.Token;

    public string? CloseReason { get; private set; }

    /// <summary>What ended the reader, when it was a failure rather than a clean close (for DAIKO_DEBUG=1).</summary>
    public Exception? CloseException { get; private set; }

    /// <summary>Called for every error reply this side sends (the home server logs each refusal): the request's message, the code, the sentence.</summary>
    public Action<ControlMessage?, ErrorCode, string>? OnRefusal { get; init; }

    /// <summary>The code the other side gave when it refused the whole connection (e.g. revoked).</summary>
    public ErrorCode? CloseCode { get; private set; }

    /// <summary>The largest frame body read from the peer; a larger length prefix ends the connection before the body is read.</summary>
    public int MaxFrameBytes { get; init; } = ControlProtocol.MaxFrameBytes;

    /// <summary>Who is at the other end, as errors about it say: <c>the home server</c>, or the terminal's agent for a CLI command.</summary>
    public string Peer { get; init; } = "the home server";

    /// <summary>How long a request waits for its reply when its caller gives no timeout of its own.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long the peer may go without completing a frame before the connection closes; null: no limit.</summary>
    public TimeSpan? IdleTimeout { get; init; }

    /// <summary>What the peer may send before it is authenticated; null: everything.</summary>
    public ControlGate? Gate { get; init; }

    /// <summary>
    /// Relay data for a relay id this side never opened ends the connection with <c>bad-request</c>
    /// (the home server opens every relay itself); data for a relay it already closed is dropped. Without
    /// it, data for an unknown id is kept (bounded) for a relay whose opening reply is still on its way.
    /// </summary>
    public bool RefusesUnopenedRelays { get; init; }

    /// <summary>
    /// The control protocol version the connection speaks, as its TLS handshake negotiated it (ALPN).
    /// <see cref="ControlProtocol.Alpn1"/> where nothing is negotiated (the terminal agent's socket).
    /// </summary>
    public string Version { get; init; } = ControlProtocol.Alpn1;

    /// <summary>Whether each relay direction has its own window (daiko/2) rather than sharing the connection's read budget.</summary>
    internal bool HasRelayWindows => ControlProtocol.HasRelayWindows(Version);

    /// <summary>Bytes received from the peer and not yet consumed: requests being handled, and in daiko/1 relay data not yet read.</summary>
    public long BufferedBytes => _budget.Bytes;

    /// <summary>Ends when the reader loop and every request handler it started have ended.</summary>
    public Task Completion => _readLoop ?? Task.CompletedTask;

    public void Start() => _readLoop = ReadLoopAsync();

    private async Task ReadLoopAsync()
    {
        var header = new byte[4];
        try
        {
            while (!_closed.IsCancellationRequested)
            {
                await _budget.WaitForRoomAsync(_closed.Token).ConfigureAwait(false);
                ControlEnvelope? envelope;
                int bytes;
                var wireBefore = Wire?.BytesReceived ?? 0;
                try
                {
                    (envelope, bytes) = await ReadFrameAsync(header).ConfigureAwait(false);
                    if (Wire is not null) bytes = (int)(Wire.BytesReceived - wireBefore);
                }
                catch (ProtocolException e) when (e.RequestId is { } id && id != 0)
                {
                    if (!Admits(e.MessageType, e.IsReply ? 0 : id, e.IsReply)) break;
                    await RefuseUndecodableAsync(e, id).ConfigureAwait(false);
                    continue;
                }
                if (envelope is not { } frame) break;
                Interlocked.Add(ref _bytesReceived, bytes);
                if (!Admits(frame.Message.Type, frame.Message.IsReply ? 0 : frame.Id, frame.Message.IsReply)) break;
                MeterOf(frame.Id, frame.Message)?.AddBytesReceived(bytes);
                if (!Dispatch(frame, bytes)) break;
            }
            if (_parting is { } parting) await SendPartingAsync(parting.Id, parting.Reply).ConfigureAwait(false);
            CloseReason ??= "the other side closed the control channel";
        }
        catch (Exception e) when (e is IOException or ProtocolException or OperationCanceledException or ObjectDisposedException or System.Security.Authentication.AuthenticationException or Daiko.Tls.TlsException)
        {
            CloseReason ??= e is ProtocolException ? e.Message : "the control channel was lost";
            CloseException ??= e;
        }
        catch (Exception e)
        {
            // Any other failure of the transport still ends the channel, and says why instead of a bare "connection closed".
            CloseReason ??= $"the control channel broke ({e.Message})";
            CloseException ??= e;
        }
        finally
        {
            Shutdown();
            await _handlers.WhenAll().ConfigureAwait(false);
        }
    }

    private async ValueTask<(ControlEnvelope? Envelope, int Bytes)> ReadFrameAsync(byte[] header)
    {
        if (IdleTimeout is not { } idle) return await ControlFrame.ReadAsync(_stream, header, _closed.Token, MaxFrameBytes).ConfigureAwait(false);
        using var timer = CancellationTokenSource.CreateLinkedTokenSource(_closed.Token);
        timer.CancelAfter(idle);
        try
        {
            return await ControlFrame.ReadAsync(_stream, header, timer.Token, MaxFrameBytes).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!_closed.IsCancellationRequested)
        {
            throw new ProtocolException($"the peer sent no complete frame for {idle.TotalSeconds:0.#} s");
        }
    }

    /// <summary>A request that failed to decode gets bad-request (or unknown-request); a reply that failed fails its waiter.</summary>
    private async Task RefuseUndecodableAsync(ProtocolException e, long id)
    {
        if (e.IsReply)
        {
            if (_pending.TryRemove(id, out var waiter)) waiter.TrySetException(new ControlErrorException(ErrorCode.BadRequest, $"a malformed reply on the control channel: {e.Message}"));
            return;
        }
        if (_onRequest is null) return;
        OnRefusal?.Invoke(null, e.Code, e.Message);
        await SendAsync(id, new ErrorReply(e.Code, e.Message), _closed.Token).ConfigureAwait(false);
    }

    /// <summary>Routes one frame; false when the connection ends (the other side refused it, or this side refuses the frame).</summary>
    private bool Dispatch(ControlEnvelope frame, int bytes)
    {
        switch (frame.Message)
        {
            case RelayData data:
                return RouteRelay(data.Relay, data);
            case RelayClose close:
                return RouteRelay(close.Relay, close);
            case RelayWindow grant:
                return Grant(grant);
            case ErrorReply refusal when frame.Id == 0:
                // The other side refuses the whole connection (unknown or revoked device, protocol version).
                CloseReason = refusal.Message;
                CloseCode = refusal.Code;
                return false;
            case { IsReply: true }:
                if (_pending.TryRemove(frame.Id, out var waiter)) waiter.TrySetResult(frame.Message);
                return true;
            default:
                if (_onRequest is not null)
                {
                    _budget.Take(bytes, 1);
                    Track(HandleAsync(new ControlRequest(frame.Id, frame.Message), bytes));
                }
                else if (frame.Id == 0) OnNotice?.Invoke(frame.Message);
                return true;
        }
    }

    internal void Track(Task handler) => _handlers.Track(handler);

    private async Task HandleAsync(ControlRequest request, int bytes)
    {
        try
        {
            await HandleCoreAsync(request).ConfigureAwait(false);
        }
        finally
        {
            _budget.Give(bytes, 1);
        }
    }

    private async Task HandleCoreAsync(ControlRequest request)
    {
        try
        {
            await _onRequest!(request, this).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException && _closed.IsCancellationRequested)
        {
            // The channel went away while the request was handled: nobody is left to answer.
        }
        catch (Exception e)
        {
            _onHandlerFault?.Invoke(e);
            try
            {
                await ReplyAsync(request, new ErrorReply(ErrorCode.Internal, "the home server failed to handle the request")).ConfigureAwait(false);
            }
            catch (ControlErrorException)
            {
                // The channel is gone too; the fault was reported above.
            }
        }
    }

    /// <summary>Sends a request and waits for its reply of type <typeparamref name="TReply"/>; an error reply becomes <see cref="ControlErrorException"/>.</summary>
    public async Task<TReply> RequestAsync<TReply>(ControlMessage request, CancellationToken cancellationToken, TimeSpan? timeout = null)
        where TReply : ControlMessage
    {
        var reply = await RequestAsync(request, cancellationToken, timeout).ConfigureAwait(false);
        return reply as TReply ?? throw new ControlErrorException(ErrorCode.BadRequest, $"the home server answered '{request.Type}' with '{reply.Type}'");
    }

    /// <summary>Sends a request and waits for any reply; an error reply becomes <see cref="ControlErrorException"/>.</summary>
    public async Task<ControlMessage> RequestAsync(ControlMessage request, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        var reply = await ExchangeAsync(request, null, cancellationToken, timeout).ConfigureAwait(false);
        return reply is ErrorReply error ? throw error.ToException() : reply;
    }

    /// <summary>
    /// Sends a request and returns its reply as it came, an error reply included (the terminal agent
    /// passes replies on unchanged). <paramref name="meter"/>, if given, is charged the request's and the
    /// reply's bytes and one round trip.
    /// </summary>
    public async Task<ControlMessage> ExchangeAsync(ControlMessage request, Daiko.Tls.TlsCounters? meter, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        var id = Interlocked.Add(ref _nextId, 2);
        var waiter = new TaskCompletionSource<ControlMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = waiter;
        if (meter is not null)
        {
            _requestMeters[id] = meter;
            meter.AddRoundTrip();
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token);
        cts.CancelAfter(timeout ?? RequestTimeout);
        try
        {
            await SendAsync(id, request, cts.Token).ConfigureAwait(false);
            return await waiter.Task.WaitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ControlErrorException(CloseCode ?? ErrorCode.Unavailable, _closed.IsCancellationRequested
                ? $"{Peer} closed the control channel: {CloseReason ?? "connection closed"}"
                : $"{Peer} did not answer in time", inner: CloseException);
        }
        finally
        {
            _pending.TryRemove(id, out _);
            _requestMeters.TryRemove(id, out _);
        }
    }

    /// <summary>The meter a frame is charged to: its request's, or its relay's.</summary>
    private Daiko.Tls.TlsCounters? MeterOf(long id, ControlMessage message)
    {
        var relay = message switch { RelayData d => d.Relay, RelayClose c => c.Relay, RelayWindow w => w.Relay, _ => 0 };
        if (relay != 0) return _relayMeters.GetValueOrDefault(relay);
        return id != 0 ? _requestMeters.GetValueOrDefault(id) : null;
    }

    /// <summary>
    /// Sends a notification (relay data) or, with the request's id, a reply. <paramref name="cancellationToken"/>
    /// stops only the wait for the channel: a frame once begun is written whole, because the stream underneath
    /// is shared by every request and relay (a TLS stream cancelled mid-write may already have used a record
    /// sequence number, or sent half a frame, and every later frame would then break the channel). A write
    /// that never ends ends when the connection closes (the stream is disposed).
    /// </summary>
    public async ValueTask SendAsync(long id, ControlMessage message, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var wireBefore = Wire?.BytesSent ?? 0;
            long sent = await ControlFrame.WriteAsync(_stream, id, message, CancellationToken.None).ConfigureAwait(false);
            if (Wire is not null) sent = Wire.BytesSent - wireBefore;
            Interlocked.Add(ref _bytesSent, sent);
            MeterOf(id, message)?.AddBytesSent(sent);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // A refusal frame may have arrived just before the write failed: let the reader see it,
            // so that the caller learns "revoked" rather than "unreachable". Once the connection has shut
            // down there is nothing more to see, and the writes still queued fail at once (the reader waits
            // for them: waiting on it here, each in turn, would make closing take a second a queued write).
            if (!_closed.IsCancellationRequested && _readLoop is { } reader) await Task.WhenAny(reader, Task.Delay(TimeSpan.FromSeconds(1), CancellationToken.None)).ConfigureAwait(false);
            if (CloseCode is { } code)
            {
                throw new ControlErrorException(code, $"{Peer} closed the control channel: {CloseReason}");
            }
            CloseReason ??= "the control channel was lost";
            Shutdown();
            throw new ControlErrorException(ErrorCode.Unavailable, $"{Peer} is unreachable: the control channel was lost");
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public Task ReplyAsync(ControlRequest request, ControlMessage reply)
    {
        if (reply is ErrorReply refusal) OnRefusal?.Invoke(request.Message, refusal.Code, refusal.Message);
        return SendAsync(request.Id, reply, _closed.Token).AsTask();
    }

    public Task ReplyErrorAsync(ControlRequest request, ErrorCode code, string message, int? triesLeft = null) =>
        ReplyAsync(request, new ErrorReply(code, message, triesLeft));

    /// <summary>Refuses the whole connection: an error frame with id 0, written directly to <paramref name="stream"/>.</summary>
    public static ValueTask<int> RefuseAsync(Stream stream, ErrorCode code, string message, CancellationToken cancellationToken) =>
        ControlFrame.WriteAsync(stream, 0, new ErrorReply(code, message), cancellationToken);

    /// <summary>Sends a notification without waiting for it; the connection observes the send and waits for it before it completes.</summary>
    internal void SendOwned(ControlMessage notification) => Track(SendQuietlyAsync(notification));

    private async Task SendQuietlyAsync(ControlMessage notification)
    {
        try
        {
            await SendAsync(0, notification, _closed.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ControlErrorException or OperationCanceledException)
        {
            // The channel is gone, and with it whatever the notification was about.
        }
    }

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
        // A relay the channel's end cuts short reads as cut, never as a complete stream (a relay that ended first keeps its end).
        foreach (var relay in _relays.Values) relay.DeliverEnd(RelayStream.ChannelEnd);
        try { _stream.Dispose(); } catch (IOException) { }
    }

    public async ValueTask DisposeAsync()
    {
        Shutdown();
        if (_readLoop is not null) await _readLoop.ConfigureAwait(false);
        await _handlers.WhenAll().ConfigureAwait(false);
    }
}
