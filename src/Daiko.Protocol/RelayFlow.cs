namespace Daiko.Protocol;

/// <summary>
/// What this side may still send on one relay in daiko/2: the peer's window, less what was sent, plus what
/// the peer granted back (<c>relay-window</c>). A writer with none left waits for a grant, its cancellation,
/// or the relay's end.
/// </summary>
internal sealed class SendCredit(long window)
{
    private readonly Lock _gate = new();
    private readonly long _window = window;
    private long _available = window;
    private bool _ended;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Takes up to <paramref name="wanted"/> bytes of credit, waiting while there is none; 0 once the relay has ended.</summary>
    public async ValueTask<int> TakeAsync(int wanted, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                if (_ended) return 0;
                if (_available > 0)
                {
                    var taken = (int)Math.Min(wanted, _available);
                    _available -= taken;
                    return taken;
                }
                changed = _changed.Task;
            }
            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Credit taken but not spent (the send was cancelled before it began).</summary>
    public void Return(int bytes) => Add(bytes, check: false);

    /// <summary>
    /// The peer's grant; false when it would leave more credit than the window (the peer granted bytes it
    /// never received: a protocol violation).
    /// </summary>
    public bool Grant(long bytes) => Add(bytes, check: true);

    /// <summary>The relay ended (either side closed it, or the connection did): waiting writers go on.</summary>
    public void End()
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            _ended = true;
            changed = _changed;
        }
        changed.TrySetResult();
    }

    private bool Add(long bytes, bool check)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            if (check && _available + bytes > _window) return false;
            _available += bytes;
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
        return true;
    }
}

/// <summary>
/// What the peer may still send on one relay in daiko/2, seen from the receiving side: the window, plus what
/// this side granted back. Bytes are granted as the reader takes them, in one grant once they reach half the
/// window, so a fast reader sends one <c>relay-window</c> frame for every two chunks or so, not one a read.
/// At most one grant is on its way at a time: what the reader takes meanwhile waits for the next, so a peer
/// that stops reading this side's writes (and so never receives a grant) can send no more than the window and
/// one grant, and the grants waiting for the write are one number, not a queue of frames.
/// </summary>
internal sealed class ReceiveWindow(long window)
{
    private readonly Lock _gate = new();
    private readonly long _window = window;
    private long _allowed = window;
    private long _received;
    private long _taken;
    private long _ungranted;
    private bool _granting;

    /// <summary>Bytes received and not yet taken by the reader: never more than the window.</summary>
    public long Held
    {
        get { lock (_gate) return _received - _taken; }
    }

    /// <summary>Bytes arrived from the peer; false when they go past what it was allowed (a protocol violation).</summary>
    public bool Arrive(long bytes)
    {
        lock (_gate)
        {
            _received += bytes;
            return _received <= _allowed;
        }
    }

    /// <summary>Bytes the reader took (or that were dropped unread); the grant to send now (the caller sends it, then calls <see cref="Sent"/>), or 0.</summary>
    public long Take(long bytes)
    {
        lock (_gate)
        {
            _taken += bytes;
            _ungranted += bytes;
            return NextGrant();
        }
    }

    /// <summary>The grant begun by <see cref="Take"/> or by the last call is written (or could not be): the next grant to send, or 0.</summary>
    public long Sent()
    {
        lock (_gate)
        {
            _granting = false;
            return NextGrant();
        }
    }

    private long NextGrant()
    {
        if (_granting || _ungranted < _window / 2) return 0;
        var grant = _ungranted;
        _ungranted = 0;
        // Allowed before the frame is written: the peer may send on it as soon as it reads it.
        _allowed += grant;
        _granting = true;
        return grant;
    }
}
