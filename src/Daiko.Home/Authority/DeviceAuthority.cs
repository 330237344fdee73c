using System.Collections.Concurrent;
using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Home.Handlers;
using Daiko.Home.Storage;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Authority;

/// <summary>
/// Per-device authority: a device wields the home card only through its own unlock session — opened
/// when that device gave PIN1 and PIN2 itself, with its own idle timer — never through another
/// device's. Sessions live in the store (<see cref="IDeviceSessionStore"/>), so a reconnecting channel
/// with the same device key finds its session again. Each device's live work (relays, handoffs,
/// handshakes and signatures in flight) runs under the device's own cancellation token, which ending
/// the session (lock, idle, revocation, the card leaving crypto-ready) cancels at once.
/// </summary>
public sealed class DeviceAuthority(IDeviceSessionStore store, CardGate gate, TimeProvider time, TimeSpan idleTimeout)
{
    /// <summary>Touches closer together than this are not written to the store (the idle timer is minutes long).</summary>
    private static readonly TimeSpan TouchGranularity = TimeSpan.FromSeconds(1);

    private readonly ConcurrentDictionary<string, WorkSource> _work = new(StringComparer.Ordinal);

    /// <summary>
    /// Devices this process served under a session (a request let through), with that session's id, until
    /// the session is found ended: what <see cref="Lost"/> is told of, whether or not the device has live work
    /// here right now. A device found live under another id had its session ended and a new one opened
    /// elsewhere (another node's lock and unlock between two sweeps): the one served here ended all the same.
    /// </summary>
    private readonly ConcurrentDictionary<string, string> _served = new(StringComparer.Ordinal);

    /// <summary>The session id an unlock on this process is opening for a device (its holdings carry over to it).</summary>
    private readonly ConcurrentDictionary<string, string> _opening = new(StringComparer.Ordinal);

    /// <summary>
    /// Devices whose session was found replaced (ended and opened again elsewhere) while what was held under the
    /// old one is let go (<see cref="Replaced"/>): every request of the device waits for it, not only the one
    /// that found it, so that no answer under the new session is overtaken by the notice to drop the old stock.
    /// Published before the served session moves on: a request that sees the new id sees this too.
    /// </summary>
    private readonly ConcurrentDictionary<string, Task> _replacing = new(StringComparer.Ordinal);

    /// <summary>
    /// The session id this process last stopped serving a device under (found ended or replaced, or ended here):
    /// a request whose read of the store names it read before that was found, and reads again rather than
    /// move the device back to a session that is gone.
    /// </summary>
    private readonly ConcurrentDictionary<string, string> _leftBehind = new(StringComparer.Ordinal);

    /// <summary>
    /// The longest a request waits for a replacement's holdings to go (its agents told): past it the request is
    /// served all the same, so that one agent connection that stopped reading cannot hold up the device's others.
    /// </summary>
    public static readonly TimeSpan ReplacementWait = TimeSpan.FromSeconds(5);

    public const string NoOwnSession =
        "this device has not unlocked the home card itself (another device's unlock does not count, and a session ends on lock or after 10 idle minutes): run 'daiko terminal unlock' on this device (PIN1 and PIN2)";

    /// <summary>Told when a device's session ends: the device and why (for the audit log).</summary>
    public Func<string, string, Task>? Ended { get; init; }

    /// <summary>
    /// Told when a device's live work here ends with a session this process did not end itself (ended on
    /// another node, or by another node that won the race to end it; found by a request or by the sweep),
    /// where <see cref="Ended"/> is not: the device and why. What this process holds for the device goes too.
    /// </summary>
    public Func<string, string, Task>? Lost { get; init; }

    /// <summary>
    /// Told when a device is found live under another session than the one this process served it under (its
    /// session ended and another opened elsewhere), by a request or by the sweep: what this process holds for
    /// the device goes, and its agents are told, before any request of the device is served under the new
    /// session (each waits for it; the sweep does not).
    /// </summary>
    public Func<string, string, Task>? Replaced { get; init; }

    public TimeSpan IdleTimeout => idleTimeout;

    /// <summary>
    /// Null when <paramref name="deviceId"/> may use the card now (its own session is live and the card
    /// is crypto-ready; the use resets the device's idle timer and the card's); otherwise the refusal.
    /// </summary>
    public Task<ErrorReply?> RefusalAsync(string deviceId, CancellationToken cancellationToken) => RefusalAsync(deviceId, cancellationToken, readAgain: false);

    private async Task<ErrorReply?> RefusalAsync(string deviceId, CancellationToken cancellationToken, bool readAgain)
    {
        // Only if a fresh look still finds the card not crypto-ready (see EndAllUnlessReadyAgainAsync); else the request goes on.
        if (gate.RefusalUnlessReady() is { } card && await EndAllUnlessReadyAgainAsync(cancellationToken)) return card;
        var session = await store.FindAsync(deviceId, cancellationToken);
        // Read before this process found that session ended or replaced (another request, the sweep, an unlock here).
        if (LeftBehind(session?.SessionId)) return await RefusalAsync(deviceId, cancellationToken, readAgain: true);
        var now = time.GetUtcNow();
        if (session is null) return await GoneAsync(null);
        if (now - session.LastUse >= idleTimeout)
        {
            await EndAsync(deviceId, "idle", cancellationToken);
            return new ErrorReply(ErrorCode.Locked, NoOwnSession);
        }
        if (now - session.LastUse >= TouchGranularity && !await store.TouchAsync(deviceId, session.SessionId, now, cancellationToken)) return await GoneAsync(session.SessionId);
        // ... or found so while this request touched it.
        if (LeftBehind(session.SessionId)) return await RefusalAsync(deviceId, cancellationToken, readAgain: true);
        var replacing = Serve(deviceId, session.SessionId);
        if (replacing is not null)
        {
            // Ended and opened again elsewhere since this process last served the device: what it held under
            // the session that ended goes before anything is served under the new one.
            try
            {
                CancelWork(deviceId);
                await WithinReplacementWaitAsync(LetGoAsync(deviceId, "its session ended elsewhere"), cancellationToken);
            }
            finally
            {
                replacing.TrySetResult();
            }
        }
        else if (ReplacementOf(deviceId) is { IsCompleted: false } pending)
        {
            // Another request (or the sweep, or an unlock here) found the replacement and is letting the old session's holdings go.
            await WithinReplacementWaitAsync(pending, cancellationToken);
        }
        gate.Card.Touch();
        return null;

        // Whether the session read is one this process stopped serving the device under since: the read is what is stale
        // then, and what the store says now is read once more.
        bool LeftBehind(string? read) => !readAgain && read is not null && _leftBehind.TryGetValue(deviceId, out var left) && left == read;

        // The session read is gone from the store, or replaced in it. If this process moved on since the read (an unlock
        // here, or another request), the read is what is stale: what the store says now. Else it ended elsewhere.
        async Task<ErrorReply?> GoneAsync(string? read)
        {
            if (LeftBehind(read) || !readAgain && (_opening.ContainsKey(deviceId) || _served.TryGetValue(deviceId, out var under) && under != read))
            {
                return await RefusalAsync(deviceId, cancellationToken, readAgain: true);
            }
            // Only the session read stops being served (a request that served the device under a newer one meanwhile keeps it).
            await CancelWorkAsync(deviceId, "its session ended elsewhere", read);
            return new ErrorReply(ErrorCode.Locked, NoOwnSession);
        }
    }

    /// <summary>
    /// Records that the device is served under <paramref name="sessionId"/>; when this process had served it
    /// under another session, one that ended elsewhere, the replacement to complete once the old session's
    /// holdings are let go (it alone of concurrent callers gets it), else null. A session an unlock on this
    /// process is opening is the served one carried over, not a replacement.
    /// </summary>
    private TaskCompletionSource? Serve(string deviceId, string sessionId)
    {
        while (true)
        {
            if (!_served.TryGetValue(deviceId, out var under))
            {
                if (_served.TryAdd(deviceId, sessionId)) return null;
                continue;
            }
            if (under == sessionId) return null;
            if (_opening.TryGetValue(deviceId, out var opening) && opening == sessionId)
            {
                if (_served.TryUpdate(deviceId, sessionId, under)) return null;
                continue;
            }
            if (MoveOn(deviceId, under, sessionId) is { } replacing) return replacing;
        }
    }

    /// <summary>
    /// Moves the device served under <paramref name="from"/> on to <paramref name="to"/>, a replacement: published
    /// first (<see cref="_replacing"/>), withdrawn if another caller moved it first (null then).
    /// </summary>
    private TaskCompletionSource? MoveOn(string deviceId, string from, string to)
    {
        var replacing = Publish(deviceId);
        if (_served.TryUpdate(deviceId, to, from))
        {
            _leftBehind[deviceId] = from;
            return replacing;
        }
        replacing.TrySetResult();
        return null;
    }

    /// <summary>Forgets that the device is served under <paramref name="served"/>'s session (remembered as left behind); false when it was not.</summary>
    private bool StopServing(KeyValuePair<string, string> served)
    {
        if (!_served.TryGetValue(served.Key, out var under) || under != served.Value) return false;
        // Recorded first, so that no request finds the device not served without finding this (it only reads again for it).
        _leftBehind[served.Key] = served.Value;
        return _served.TryRemove(served);
    }

    /// <summary>As <see cref="StopServing(KeyValuePair{string, string})"/>, under whichever session it is served.</summary>
    private bool StopServing(string deviceId) => _served.TryGetValue(deviceId, out var under) && StopServing(KeyValuePair.Create(deviceId, under));

    /// <summary>Tells <see cref="Replaced"/>; a throw becomes the task's failure.</summary>
    private async Task LetGoAsync(string deviceId, string reason)
    {
        if (Replaced is { } replaced) await replaced(deviceId, reason);
    }

    /// <summary>Waits for <paramref name="letGo"/> up to <see cref="ReplacementWait"/> (then goes on; its failure was the letting go's to report).</summary>
    private static async Task WithinReplacementWaitAsync(Task letGo, CancellationToken cancellationToken)
    {
        try
        {
            await letGo.WaitAsync(ReplacementWait, cancellationToken);
        }
        catch (TimeoutException)
        {
        }
    }

    /// <summary>Publishes a replacement of the device's session being handled (<see cref="_replacing"/>): complete it when done.</summary>
    private TaskCompletionSource Publish(string deviceId)
    {
        var replacing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _replacing.AddOrUpdate(deviceId, replacing.Task, (_, earlier) => earlier.IsCompleted ? replacing.Task : Task.WhenAll(earlier, replacing.Task));
        return replacing;
    }

    /// <summary>The device's replacement being handled (<see cref="_replacing"/>), or null; a finished one is forgotten.</summary>
    private Task? ReplacementOf(string deviceId)
    {
        if (!_replacing.TryGetValue(deviceId, out var replacement)) return null;
        if (replacement.IsCompleted) _replacing.TryRemove(KeyValuePair.Create(deviceId, replacement));
        return replacement;
    }

    /// <summary>Whether the device holds a live session of its own (no touch).</summary>
    public async Task<bool> HasSessionAsync(string deviceId, CancellationToken cancellationToken) =>
        await store.FindAsync(deviceId, cancellationToken) is { } session && time.GetUtcNow() - session.LastUse < idleTimeout;

    /// <summary>The device gave both PINs itself: its own session starts (a previous one's live work ends).</summary>
    public async Task OpenAsync(string deviceId, CancellationToken cancellationToken)
    {
        // One unlock of a device at a time here: a second one would read the first's new session as one opened elsewhere.
        var turn = _unlocks.GetOrAdd(deviceId, _ => new SemaphoreSlim(1, 1));
        await turn.WaitAsync(cancellationToken);
        try
        {
            await OpenInTurnAsync(deviceId, cancellationToken);
        }
        finally
        {
            turn.Release();
        }
    }

    /// <summary>A turn for each device's unlocks on this process (<see cref="OpenAsync"/>); one a device enrolled here at most.</summary>
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _unlocks = new(StringComparer.Ordinal);

    private async Task OpenInTurnAsync(string deviceId, CancellationToken cancellationToken)
    {
        CancelWork(deviceId);
        var now = time.GetUtcNow();
        var session = new DeviceSession(deviceId, Convert.ToHexString(RandomNumberGenerator.GetBytes(16)), now, now);
        // Opened here: the device's holdings here carry over to the new session (a new id is not a session
        // ended elsewhere), for a request or a sweep that meets the new id before the served one is moved to it.
        _opening[deviceId] = session.SessionId;
        try
        {
            // The new session takes the place of the one read, and only of it: one that another node ended (or ended
            // and opened again) between the read and the write is read again, and is not carried over.
            DeviceSession? current;
            do
            {
                current = await store.FindAsync(deviceId, cancellationToken);
                if (_served.TryGetValue(deviceId, out var under) && current?.SessionId != under) await LetGoOfEndedAsync(deviceId, under, cancellationToken);
            }
            while (!await store.ReplaceAsync(session, current?.SessionId, cancellationToken));
            // A request that read the replaced session reads again (its holdings carry over; the request is served under the new one).
            if (current is not null) _leftBehind[deviceId] = current.SessionId;
            if (_served.TryGetValue(deviceId, out var served) && served != session.SessionId) _served.TryUpdate(deviceId, session.SessionId, served);
        }
        finally
        {
            _opening.TryRemove(KeyValuePair.Create(deviceId, session.SessionId));
        }
    }

    /// <summary>
    /// The session served here ended elsewhere (another node's lock, and maybe its unlock): what was held under it goes,
    /// and is not carried over to the session opened here.
    /// </summary>
    private async Task LetGoOfEndedAsync(string deviceId, string under, CancellationToken cancellationToken)
    {
        // Published first: a request of the device meanwhile (its agent's) waits, as for a replacement found by a request.
        var replacing = Publish(deviceId);
        try
        {
            // Bounded as a request's wait is: an agent that stopped reading holds up neither the unlock nor the device's requests.
            if (StopServing(KeyValuePair.Create(deviceId, under))) await WithinReplacementWaitAsync(LetGoAsync(deviceId, "its session ended elsewhere"), cancellationToken);
        }
        finally
        {
            replacing.TrySetResult();
        }
    }

    /// <summary>Ends the device's session and, at once, its relays, handoffs and signatures in flight.</summary>
    public async Task<bool> EndAsync(string deviceId, string reason, CancellationToken cancellationToken = default)
    {
        var hadWork = CancelWork(deviceId);
        var served = StopServing(deviceId);
        var ended = await store.EndAsync(deviceId, cancellationToken);
        if (ended && Ended is { } audit) await audit(deviceId, reason);
        // Another process ended it first (two nodes sweeping one idle session): this one's holdings go all the same.
        else if (!ended && (hadWork || served) && Lost is { } lost) await lost(deviceId, reason);
        return ended;
    }

    /// <summary>Ends every device's session (the card was locked, disabled, unblocked or given a new key).</summary>
    public async Task EndAllAsync(string reason, CancellationToken cancellationToken = default)
    {
        foreach (var session in await store.ListAsync(cancellationToken)) await EndAsync(session.DeviceId, reason, cancellationToken);
        foreach (var device in _work.Keys.Concat(_served.Keys).Distinct().ToList()) await CancelWorkAsync(device, reason);
    }

    /// <summary>
    /// Ends every session, and this process's work under them, because the card left crypto-ready; true when it did. This
    /// process's view of the card may be older than sessions another node (or process) opened since it made the card
    /// crypto-ready (a hosted card's view of "not ready" is kept up to 200 ms): the sessions listed now end only if a fresh
    /// look, taken after the listing, still finds the card not crypto-ready. The sweep and every request ask it alike.
    /// </summary>
    private async Task<bool> EndAllUnlessReadyAgainAsync(CancellationToken cancellationToken)
    {
        const string reason = "the home card left crypto-ready";
        var working = _work.ToArray();
        var listed = await store.ListAsync(cancellationToken);
        if (listed.Count > 0 && gate.Card.GetStatus().State == HomeCardState.CryptoReady) return false;
        foreach (var session in listed) await EndAsync(session.DeviceId, reason, cancellationToken);
        await LoseAsync(working, _served.ToArray(), [], reason);
        return true;
    }

    /// <summary>
    /// Every device this authority holds something for: a session in the store, whichever process opened it
    /// (idle ones too), or live work or a served session here. What is held here is listed first, then the store.
    /// </summary>
    public async Task<IReadOnlyCollection<string>> HeldDevicesAsync(CancellationToken cancellationToken)
    {
        var held = new HashSet<string>(_work.Keys.Concat(_served.Keys), StringComparer.Ordinal);
        foreach (var session in await store.ListAsync(cancellationToken)) held.Add(session.DeviceId);
        return held;
    }

    /// <summary>Whether any device other than <paramref name="deviceId"/> still holds a live session.</summary>
    public Task<bool> OthersHoldSessionsAsync(string deviceId, CancellationToken cancellationToken) => LiveSessionHeldAsync(deviceId, cancellationToken);

    /// <summary>Whether any device holds a live session (the owner's console, which is no device, asks this).</summary>
    public Task<bool> AnyHoldsSessionAsync(CancellationToken cancellationToken) => LiveSessionHeldAsync(except: null, cancellationToken);

    private async Task<bool> LiveSessionHeldAsync(string? except, CancellationToken cancellationToken) =>
        (await store.ListAsync(cancellationToken)).Any(s => s.DeviceId != except && time.GetUtcNow() - s.LastUse < idleTimeout);

    /// <summary>
    /// The token that ends the device's live work; linked with <paramref name="other"/> (the channel's
    /// own). Dispose the returned source when the work is done.
    /// </summary>
    public DeviceWork LinkWork(string deviceId, CancellationToken other)
    {
        var work = CurrentWork(deviceId);
        return new DeviceWork(work, CancellationTokenSource.CreateLinkedTokenSource(work.Token, other));
    }

    /// <summary>
    /// Ends the device's live work here (relays, handed-over sessions, handshakes in flight) and leaves its session open:
    /// its policy changed what it may reach. Its next request runs under new work. Whether it had any.
    /// </summary>
    public bool EndWork(string deviceId) => CancelWork(deviceId, byPolicy: true);

    /// <summary>The token that ends the device's live work when its session ends (or <see cref="EndWork"/> ends it).</summary>
    public CancellationToken Work(string deviceId) => CurrentWork(deviceId).Token;

    private WorkSource CurrentWork(string deviceId)
    {
        while (true)
        {
            var source = _work.GetOrAdd(deviceId, _ => new WorkSource());
            if (!source.IsCancellationRequested) return source;
            _work.TryRemove(new KeyValuePair<string, WorkSource>(deviceId, source));
        }
    }

    /// <summary>
    /// One sweep (run every quarter second): sessions idle for the timeout end, sessions ended elsewhere
    /// (another node, the store edited) end their live work here too, and a card that left crypto-ready
    /// ends them all.
    /// </summary>
    public async Task SweepAsync(CancellationToken cancellationToken)
    {
        if (gate.Card.State != HomeCardState.CryptoReady)
        {
            await EndAllUnlessReadyAgainAsync(cancellationToken);
            return;
        }
        // What runs and was served before the listing: a device that unlocks while the sweep goes on is not
        // taken for one whose session ended (its new work is not in these).
        var before = _work.ToArray();
        var servedBefore = _served.ToArray();
        var live = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var session in await store.ListAsync(cancellationToken))
        {
            if (time.GetUtcNow() - session.LastUse >= idleTimeout) await EndAsync(session.DeviceId, "idle", cancellationToken);
            else live[session.DeviceId] = session.SessionId;
        }
        await LoseAsync(before, servedBefore, live, "its session ended elsewhere");
    }

    /// <summary>
    /// Ends, of the work and the served devices seen before a listing, those whose session is not in
    /// <paramref name="live"/> (device to session id), or is there under another id than the one served here:
    /// only the very work seen then is cancelled, and <see cref="Lost"/> (<see cref="Replaced"/> for a device found
    /// under another id, not awaited) is told once a device.
    /// </summary>
    private async Task LoseAsync(KeyValuePair<string, WorkSource>[] working, KeyValuePair<string, string>[] served, Dictionary<string, string> live, string reason)
    {
        var lost = new HashSet<string>(StringComparer.Ordinal);
        // A device served here under a session that is no longer the live one lost it, whatever runs now; of
        // concurrent finders (a request of the device, another sweep) only the one that moves it on tells.
        var replaced = new Dictionary<string, TaskCompletionSource>(StringComparer.Ordinal);
        foreach (var entry in served)
        {
            if (!live.TryGetValue(entry.Key, out var id))
            {
                if (StopServing(entry)) lost.Add(entry.Key);
            }
            else if (id != entry.Value && !(_opening.TryGetValue(entry.Key, out var opening) && opening == id))
            {
                if (MoveOn(entry.Key, entry.Value, id) is { } replacing) replaced[entry.Key] = replacing;
            }
        }
        try
        {
            foreach (var entry in working)
            {
                if (live.ContainsKey(entry.Key) && !replaced.ContainsKey(entry.Key) || !_work.TryRemove(entry)) continue;
                entry.Value.Cancel();
                lost.Add(entry.Key);
            }
        }
        finally
        {
            // Whatever the cancelling did: each replacement found is let go, its device's requests freed once it is.
            // Not awaited: an agent that stopped reading must not hold up the sweep (and with it idle ends and revocations).
            foreach (var (device, replacing) in replaced)
            {
                lost.Remove(device);
                _ = LetGoAsync(device, reason).ContinueWith(t =>
                {
                    _ = t.Exception;
                    replacing.TrySetResult();
                }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }
        if (Lost is not { } told) return;
        foreach (var device in lost) await told(device, reason);
    }

    /// <summary>
    /// Cancels the device's live work and forgets it was served here (under <paramref name="servedUnder"/> only, where
    /// given); tells <see cref="Lost"/> when it had either.
    /// </summary>
    private async Task CancelWorkAsync(string deviceId, string reason, string? servedUnder = null)
    {
        var hadWork = CancelWork(deviceId);
        var stopped = servedUnder is null ? StopServing(deviceId) : StopServing(KeyValuePair.Create(deviceId, servedUnder));
        if ((stopped || hadWork) && Lost is { } lost) await lost(deviceId, reason);
    }

    /// <summary>Cancels the device's live work; false when it had none.</summary>
    private bool CancelWork(string deviceId, bool byPolicy = false)
    {
        if (!_work.TryRemove(deviceId, out var source)) return false;
        // Said before the cancelling, so that whoever sees the token cancelled sees why.
        source.EndedByPolicy = byPolicy;
        // Not disposed: a request may be linking to it right now; a cancelled source holds nothing.
        source.Cancel();
        return true;
    }

    internal sealed class WorkSource : CancellationTokenSource
    {
        public volatile bool EndedByPolicy;
    }

    /// <summary>
    /// One request's share of its device's live work: <see cref="Token"/> ends with the work or the channel, and
    /// <see cref="EndedByPolicy"/> tells whether the work ended because the owner's policy change took its market or
    /// mode away (the device's session stays open) rather than with the session.
    /// </summary>
    public sealed class DeviceWork : IDisposable
    {
        private readonly WorkSource _work;
        private readonly CancellationTokenSource _linked;

        internal DeviceWork(WorkSource work, CancellationTokenSource linked)
        {
            _work = work;
            _linked = linked;
        }

        public CancellationToken Token => _linked.Token;

        public bool EndedByPolicy => _work.IsCancellationRequested && _work.EndedByPolicy;

        public void Dispose() => _linked.Dispose();
    }
}
