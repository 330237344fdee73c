namespace Daiko.Protocol;

/// <summary>
/// What one control connection may hold at once from its peer: bytes received but not yet consumed
/// (relay data waiting for its reader, request frames being handled) and requests being handled. The
/// reader loop waits for room before it reads the next frame, so a peer that sends faster than it is
/// served is slowed down by TCP instead of filling the server's memory.
/// </summary>
internal sealed class ReadBudget(long maxBytes, int maxRequests)
{
    private readonly Lock _gate = new();
    private long _bytes;
    private int _requests;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public long Bytes
    {
        get { lock (_gate) return _bytes; }
    }

    /// <summary>Waits until the connection holds less than its byte budget and has a free request slot.</summary>
    public async ValueTask WaitForRoomAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                if (_bytes < maxBytes && _requests < maxRequests) return;
                changed = _changed.Task;
            }
            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public void Take(long bytes, int requests = 0)
    {
        lock (_gate)
        {
            _bytes += bytes;
            _requests += requests;
        }
    }

    public void Give(long bytes, int requests = 0)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            _bytes -= bytes;
            _requests -= requests;
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }
}

/// <summary>
/// Which requests a connection accepts before its peer is authenticated: anything else, and any reply, is
/// answered with <see cref="Code"/> and the connection closes (the home server admits only an <c>enroll</c>
/// request from a peer without a device certificate).
/// </summary>
public sealed record ControlGate(Func<string?, bool> Admits, ErrorCode Code, string Message);
