using System.Buffers;
using Daiko.Protocol.Messages;

namespace Daiko.Protocol;

/// <summary>Relay channels and the gate in front of an unauthenticated peer.</summary>
public sealed partial class ControlConnection
{
    /// <summary>Whether the gate lets this message in; if not, the refusal is sent under <paramref name="id"/> and the connection ends.</summary>
    /// <summary>Whether a frame may be read before the peer is authenticated (<see cref="Gate"/>): a request of a type the gate admits, never a reply (this side asks such a peer nothing).</summary>
    private bool Admits(string? type, long id, bool isReply)
    {
        if (Gate is not { } gate || !isReply && gate.Admits(type)) return true;
        _parting = (id, new ErrorReply(gate.Code, gate.Message));
        CloseReason ??= gate.Message;
        return false;
    }

    /// <summary>The last frame before closing (a refusal of the peer): written with a short deadline, then the peer's bytes are read and dropped briefly, so the close does not reset the connection before the peer reads it.</summary>
    private async Task SendPartingAsync(long id, ErrorReply refusal)
    {
        OnRefusal?.Invoke(null, refusal.Code, refusal.Message);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            await SendAsync(id, refusal, deadline.Token).ConfigureAwait(false);
            var sink = new byte[4096];
            while (await _stream.ReadAsync(sink, deadline.Token).ConfigureAwait(false) > 0) { }
        }
        catch (Exception e) when (e is ControlErrorException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The peer went away first, or kept sending: it had its chance to read the refusal.
        }
    }

    // Relays this side closed lately, whose late data is dropped rather than kept for an opening (bounded).
    private const int RecentlyClosedKept = 256;
    private readonly RecentIds _recentlyClosed = new(RecentlyClosedKept);

    // Relays whose early data was dropped to keep the table bounded (bounded too): should one open, it opens cut.
    private readonly RecentIds _earlyLost = new(RecentlyClosedKept);

    private bool RouteRelay(long relayId, ControlMessage message)
    {
        lock (_early)
        {
            if (_relays.TryGetValue(relayId, out var relay))
            {
                return Deliver(relay, message) || PastWindow(relayId);
            }
            if (RefusesUnopenedRelays)
            {
                // A relay this side closed may still get the data that was on its way: dropped. An id it never opened is refused.
                if (relayId > 0 && relayId <= _highestRelayOpened) return true;
                return RefusePeer("relay", $"relay {relayId} was never opened on this connection", $"relay data for relay {relayId}, which was never opened");
            }
            // The rest of what was on its way to a relay this side closed: dropped.
            if (_recentlyClosed.Contains(relayId)) return true;
            // Data for a relay whose opening reply is still on its way: keep it (bounded). When more relays
            // wait than requests can be in flight (data for relays closed longer ago than the ones
            // remembered), the lowest id is dropped.
            if (!_early.TryGetValue(relayId, out var early))
            {
                if (_early.Count >= ControlProtocol.MaxRequestsInFlight)
                {
                    // Should that relay open after all, what it was sent is gone: it opens cut, never with a hole.
                    var dropped = _early.Keys.Min();
                    _early.Remove(dropped);
                    _earlyLost.Add(dropped);
                }
                _early[relayId] = early = new EarlyRelay(HasRelayWindows ? new ReceiveWindow(ControlProtocol.RelayWindowBytes) : null);
            }
            if (early.Window is { } window)
            {
                // daiko/2: charged to the relay's window like any other data (the peer sent it on credit), so the
                // window bounds it however many frames carry it; kept whole and in order, as one run of bytes.
                if (!window.Arrive(message is RelayData data ? data.Data.Length : 0)) return PastWindow(relayId);
                early.Keep(message);
            }
            else if (early.Frames.Count < ControlProtocol.MaxEarlyRelayFrames)
            {
                early.Frames.Add(message);
            }
            else
            {
                // daiko/1 keeps no more frames: the relay opens cut rather than with a hole in its stream.
                early.Lost = true;
            }
            return true;
        }
    }

    /// <summary>What came for a relay whose opening reply is on its way: in daiko/1 the frames (at most <see cref="ControlProtocol.MaxEarlyRelayFrames"/>), in daiko/2 the bytes and the close, charged to the relay's window.</summary>
    private sealed class EarlyRelay(ReceiveWindow? window)
    {
        private ArrayBufferWriter<byte>? _data;

        public ReceiveWindow? Window { get; } = window;

        public List<ControlMessage> Frames { get; } = [];

        public RelayClose? Close { get; private set; }

        public ReadOnlyMemory<byte> Data => _data?.WrittenMemory ?? ReadOnlyMemory<byte>.Empty;

        /// <summary>daiko/1: frames came past what is kept, so what is kept is not the whole stream.</summary>
        public bool Lost { get; set; }

        /// <summary>daiko/2: data is appended (none after the close), a close kept.</summary>
        public void Keep(ControlMessage message)
        {
            if (Close is not null) return;
            if (message is RelayData data) (_data ??= new ArrayBufferWriter<byte>()).Write(data.Data.Span);
            else Close = (RelayClose)message;
        }
    }

    /// <summary>The peer sent relay data beyond the credit it was given: refused, as malformed input is, rather than buffered.</summary>
    private bool PastWindow(long relayId) =>
        RefusePeer("data", $"relay {relayId} received data past its window: more than {ControlProtocol.RelayWindowBytes} bytes sent and not granted back (relay-window)");

    /// <summary>Refuses the whole connection for a relay frame that breaks the protocol: <c>bad-request</c> naming the field, under id 0.</summary>
    private bool RefusePeer(string field, string sentence, string? closeReason = null)
    {
        _parting = (0, new ErrorReply(ErrorCode.BadRequest, $"field '{field}': {sentence}"));
        CloseReason ??= closeReason ?? sentence;
        return false;
    }

    /// <summary>The peer's reader took data of a relay this side sends on: the writer may send that much more.</summary>
    private bool Grant(RelayWindow grant)
    {
        if (!HasRelayWindows)
        {
            CloseReason ??= $"control protocol {Version} has no '{RelayWindow.WireType}' message";
            return false;
        }
        // A grant for a relay this side closed (or never opened) has nothing left to grant to.
        if (!_relays.TryGetValue(grant.Relay, out var relay) || relay.Grant(grant.Bytes)) return true;
        return RefusePeer("bytes", $"relay-window for relay {grant.Relay} grants more than was sent on it");
    }

    /// <summary>Passes a frame to its relay; false when relay data goes past the relay's window.</summary>
    private static bool Deliver(RelayStream relay, ControlMessage message)
    {
        if (message is RelayData data) return relay.Deliver(data.Data);
        relay.DeliverEnd(((RelayClose)message).Reason);
        return true;
    }

    /// <summary>daiko/1: relay data now held for a relay's reader (counted against the connection's budget until read).</summary>
    internal void Buffered(int bytes) => _budget.Take(bytes);

    /// <summary>daiko/1: relay data a relay's reader took (or dropped).</summary>
    internal void Consumed(int bytes) => _budget.Give(bytes);

    /// <summary>A byte stream multiplexed on this connection under <paramref name="relayId"/>; <paramref name="meter"/>, if given, is charged its frames.</summary>
    public RelayStream OpenRelay(long relayId, Daiko.Tls.TlsCounters? meter = null)
    {
        if (meter is not null) _relayMeters[relayId] = meter;
        lock (_early)
        {
            _early.Remove(relayId, out var early);
            var relay = new RelayStream(this, relayId, early?.Window ?? (HasRelayWindows ? new ReceiveWindow(ControlProtocol.RelayWindowBytes) : null));
            _relays[relayId] = relay;
            _highestRelayOpened = Math.Max(_highestRelayOpened, relayId);
            if (early is { Lost: true } || _earlyLost.Remove(relayId))
            {
                // Some of what the peer sent before the opening was dropped: the reader is told the stream was cut.
                relay.DeliverEnd(RelayStream.LostEnd);
            }
            else if (early is not null)
            {
                // Charged to the window (daiko/2) when it came.
                relay.Enqueue(early.Data);
                foreach (var message in early.Frames)
                {
                    if (message is RelayData data) relay.Enqueue(data.Data);
                    else relay.DeliverEnd(((RelayClose)message).Reason);
                }
                if (early.Close is { } close) relay.DeliverEnd(close.Reason);
            }
            // Opened as the connection shuts down (after its relays were ended, or before it cancelled): what came before
            // is kept, and the relay ends as they did, cut unless its end came first.
            if (_closed.IsCancellationRequested) relay.DeliverEnd(RelayStream.ChannelEnd);
            return relay;
        }
    }

    internal void ForgetRelay(long relayId)
    {
        lock (_early)
        {
            _relays.TryRemove(relayId, out _);
            _early.Remove(relayId);
            _recentlyClosed.Add(relayId);
        }
        _relayMeters.TryRemove(relayId, out _);
    }

    /// <summary>How many relay ids hold data that no open relay has taken yet (at most <see cref="ControlProtocol.MaxRequestsInFlight"/>).</summary>
    internal int RelaysWaitingForOpen
    {
        get
        {
            lock (_early) return _early.Count;
        }
    }

    /// <summary>Relay ids remembered for a while: at most <c>capacity</c>, the oldest forgotten first (callers hold the early table's lock).</summary>
    private sealed class RecentIds(int capacity)
    {
        private readonly HashSet<long> _ids = [];
        private readonly Queue<long> _order = new();

        public bool Contains(long id) => _ids.Contains(id);

        public void Add(long id)
        {
            if (!_ids.Add(id)) return;
            _order.Enqueue(id);
            if (_order.Count > capacity) _ids.Remove(_order.Dequeue());
        }

        /// <summary>Forgets <paramref name="id"/> (its place in the order goes when its turn comes); whether it was remembered.</summary>
        public bool Remove(long id) => _ids.Remove(id);
    }
}
