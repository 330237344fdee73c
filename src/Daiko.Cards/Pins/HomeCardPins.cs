using Daiko.Cards.Tokens;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Pins;

/// <summary>
/// The home card's PIN state machine (seed Fig. 6): Locked → PIN1 → RemoteAccessWait → PIN2 →
/// CryptoReady → (done or 10 minutes idle) RemoteAccessWait; three wrong PINs → Disabled. Every PIN is
/// checked by a token and counted by <see cref="CountedPinCheck"/>. Owns the card's lock: signatures
/// run through <see cref="SignReady{T}"/> so that none is made outside CryptoReady (side by side, on
/// sessions of their own), other token work through <see cref="WithReady{T}"/>.
/// </summary>
internal sealed class HomeCardPins
{
    private readonly HomeCardOptions _options;
    private readonly HomeCardToken _token;
    private readonly CounterFile<PersistedCardState> _file;
    private HomeCardState _state;
    private DateTimeOffset _lastUse;
    private DateTimeOffset? _persistedIdle;

    // Counts decisions to write the state file: a touch written outside the lock is dropped when a later one was made.
    private long _writes;
    private int _unblocks;

    public HomeCardPins(HomeCardOptions options, HomeCardToken token)
    {
        _options = options;
        _token = token;
        _file = PersistedCardState.File(options);
        var persisted = _file.Read();
        _state = persisted.Disabled ? HomeCardState.Disabled : HomeCardState.Locked;
        _unblocks = persisted.Unblocks;
    }

    /// <summary>
    /// Follows what other processes wrote to the card's state file: a card disabled there (PIN2 guessed
    /// wrong through an owner command) is disabled here; a card unblocked there is locked here, with its
    /// new PINs. Returns true when the state changed.
    /// </summary>
    public bool SyncWithFile()
    {
        lock (Gate)
        {
            var persisted = _file.Read();
            if (persisted.Disabled)
            {
                if (_state == HomeCardState.Disabled) return false;
                Interlocked.Increment(ref _writes);
                _token.Close();
                _state = HomeCardState.Disabled;
                return true;
            }
            if (_state != HomeCardState.Disabled && persisted.Unblocks == _unblocks) return false;
            _unblocks = persisted.Unblocks;
            Interlocked.Increment(ref _writes);
            _token.Close();
            // New PINs were set in another process: the module must read the tokens afresh.
            _token.Module.Reinitialize();
            _state = HomeCardState.Locked;
            return true;
        }
    }

    public object Gate { get; } = new();

    public HomeCardState State
    {
        get
        {
            lock (Gate)
            {
                ExpireIfIdle();
                return _state;
            }
        }
    }

    /// <summary>The state, tries left and idle deadline, read together.</summary>
    public (HomeCardState State, int Pin1Left, int Pin2Left, DateTimeOffset? IdleExpiresAt) Snapshot()
    {
        lock (Gate)
        {
            ExpireIfIdle();
            var p = _file.Read();
            return (_state, CountedPinCheck.TriesLeft(p.Pin1Failures), CountedPinCheck.TriesLeft(p.Pin2Failures),
                _state == HomeCardState.CryptoReady ? _lastUse + _options.IdleTimeout : null);
        }
    }

    public PinResult EnterPin1(string pin)
    {
        lock (Gate)
        {
            ExpireIfIdle();
            if (_state == HomeCardState.Disabled) return Disabled();
            // Past Locked already (another terminal gave PIN1): the PIN is still checked and counted.
            var wasLocked = _state == HomeCardState.Locked;
            var result = TryPin(isPin1: true, pin, onAccepted: null);
            if (result.Accepted && wasLocked) SetState(HomeCardState.RemoteAccessWait);
            return result with { State = _state };
        }
    }

    /// <param name="onReady">Runs in the new ready session before the card turns CryptoReady (e.g. giving an old card its purse key).</param>
    public PinResult EnterPin2(string pin, Action? onReady)
    {
        lock (Gate)
        {
            ExpireIfIdle();
            if (_state == HomeCardState.Disabled) return Disabled();
            if (_state == HomeCardState.Locked) return new PinResult(PinOutcome.WrongState, -1, _state, "give PIN1 first: the card is locked");
            var result = TryPin(isPin1: false, pin, onReady);
            if (result.Accepted)
            {
                _lastUse = _options.Time.GetUtcNow();
                SetState(HomeCardState.CryptoReady);
            }
            return result with { State = _state };
        }
    }

    public void Done()
    {
        lock (Gate)
        {
            if (_state == HomeCardState.CryptoReady) DropToRemoteAccessWait();
        }
    }

    public void Lock()
    {
        lock (Gate)
        {
            if (_state == HomeCardState.Disabled) return;
            _token.Close();
            SetState(HomeCardState.Locked);
        }
    }

    /// <summary>
    /// Resets the idle clock. The clock this process runs on is <c>_lastUse</c>, in memory; the deadline in
    /// the state file only tells other processes (<c>home card status</c>) until when the card is ready, and
    /// no decision depends on it (a restarted server starts Locked). So the file is rewritten only when its
    /// deadline is <see cref="PersistedIdleGranularity"/> or more behind: at most one durable write a
    /// second instead of one per request, on the path of every delegation. The counters in the same file
    /// are never deferred: each PIN attempt writes them durably before its answer (<see cref="CountedPinCheck"/>).
    /// </summary>
    public void Touch()
    {
        long write;
        DateTimeOffset idle;
        lock (Gate)
        {
            ExpireIfIdle();
            if (_state != HomeCardState.CryptoReady) return;
            _lastUse = _options.Time.GetUtcNow();
            if (_persistedIdle is { } written && _lastUse + _options.IdleTimeout - written < PersistedIdleGranularity) return;
            idle = _lastUse + _options.IdleTimeout;
            _persistedIdle = idle;
            write = ++_writes;
        }
        // The fsync happens outside the card's lock (every request reads the state under it); a state
        // written after this one was decided (a lock, an expiry) wins, and this deadline is then dropped.
        _file.Locked(() =>
        {
            if (write != Volatile.Read(ref _writes)) return 0;
            var p = _file.Read();
            _file.Write(p with { State = p.Disabled ? HomeCardState.Disabled : HomeCardState.CryptoReady, IdleExpiresAt = idle });
            return 0;
        });
    }

    /// <summary>How far the idle deadline in the state file may lag the real one (it is never later).</summary>
    public static readonly TimeSpan PersistedIdleGranularity = TimeSpan.FromSeconds(1);

    /// <summary>After the admin code set new PINs: counters cleared, Locked.</summary>
    public void Unblocked()
    {
        Interlocked.Increment(ref _writes);
        _unblocks = _file.Locked(() =>
        {
            var unblocks = _file.Read().Unblocks + 1;
            _file.Write(new PersistedCardState { Unblocks = unblocks });
            return unblocks;
        });
        _token.Close();
        _state = HomeCardState.Locked;
    }

    /// <summary>Runs a token operation in the ready session; each use resets the idle clock. Caller holds no lock.</summary>
    public T WithReady<T>(Func<HomeCardToken, T> operation)
    {
        lock (Gate)
        {
            RequireReady();
            var result = operation(_token);
            _lastUse = _options.Time.GetUtcNow();
            return result;
        }
    }

    /// <summary>
    /// Runs a signature on a signing session of its own, outside the card's lock, so that signatures run
    /// side by side; the card is checked ready under the lock, and leaving CryptoReady waits for the
    /// signatures in flight (<see cref="SigningSessions"/>). Each use resets the idle clock.
    /// </summary>
    public T SignReady<T>(Func<HomeCardToken, Net.Pkcs11Interop.HighLevelAPI.ISession, T> signature)
    {
        SigningSessions.Hold hold;
        lock (Gate)
        {
            RequireReady();
            hold = _token.Signing!.Enter();
            _lastUse = _options.Time.GetUtcNow();
        }
        using (hold)
        {
            return hold.Sign(session => signature(_token, session));
        }
    }

    private void RequireReady()
    {
        ExpireIfIdle();
        if (_state == HomeCardState.CryptoReady && _token.IsReady) return;
        throw _state == HomeCardState.Disabled
            ? new CardDisabledException(PinSentences.HomeCardDisabled)
            : new CardNotReadyException(_state == HomeCardState.Locked
                ? "the home card is locked: give PIN1 and then PIN2 from a terminal"
                : "the home card is waiting for PIN2 from a terminal");
    }

    /// <summary>
    /// Logs in with PIN2 for an owner operation (CSR, certificate or key import), under the same three
    /// tries as PIN2 over the control channel: a wrong PIN2 here is a strike too. Returns whether the
    /// caller must log out (false when the card's ready session holds the login). Caller holds <see cref="Gate"/>.
    /// </summary>
    public bool LoginOwner(ISession session, string pin2)
    {
        var (attempt, loggedInHere) = Counted(isPin1: false, session, pin2);
        if (attempt.WasExhausted) throw new CardDisabledException(PinSentences.HomeCardDisabled);
        if (!attempt.Correct)
        {
            if (attempt.After.Disabled)
            {
                _token.Close();
                _state = HomeCardState.Disabled;
                throw new CardDisabledException(PinSentences.NowDisabled("PIN2"));
            }
            var left = CountedPinCheck.TriesLeft(attempt.After.Pin2Failures);
            throw new WrongPinException(PinSentences.Wrong("PIN2", left), left);
        }
        return loggedInHere;
    }

    private PinResult TryPin(bool isPin1, string pin, Action? onAccepted)
    {
        var session = _token.OpenSession(isPin1, readWrite: !isPin1);
        var name = isPin1 ? "PIN1" : "PIN2";
        CountedAttempt<PersistedCardState> attempt;
        bool loggedInHere;
        try
        {
            (attempt, loggedInHere) = Counted(isPin1, session, pin);
        }
        catch
        {
            session.Dispose();
            throw;
        }
        if (attempt.WasExhausted)
        {
            session.Dispose();
            return Disabled();
        }
        if (attempt.Correct)
        {
            if (isPin1 || (!loggedInHere && _token.IsReady))
            {
                // PIN1's token is never kept logged in; a PIN2 checked while the ready session holds the
                // login leaves that session (and every signature in flight on it) as it was.
                if (loggedInHere) session.Logout();
                session.Dispose();
            }
            else
            {
                _token.BecomeReady(session);
                try
                {
                    onAccepted?.Invoke();
                }
                catch
                {
                    _token.Close();
                    throw;
                }
            }
            return new PinResult(PinOutcome.Accepted, CountedPinCheck.MaxTries, _state, $"{name} accepted");
        }
        session.Dispose();
        if (attempt.After.Disabled)
        {
            _token.Close();
            _state = HomeCardState.Disabled;
            return new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, PinSentences.NowDisabled(name));
        }
        var left = CountedPinCheck.TriesLeft(isPin1 ? attempt.After.Pin1Failures : attempt.After.Pin2Failures);
        return new PinResult(PinOutcome.Wrong, left, _state, PinSentences.Wrong(name, left));
    }

    /// <summary>
    /// The PIN checked by the token and counted against its three tries (SoftHSM2 rewrites the token file
    /// on each check, so the file lock also keeps concurrent checks from corrupting each other's reads).
    /// The PIN is always checked, and checking it never logs the token out: another device's signatures
    /// on the ready session go on, whether this PIN was right or wrong
    /// (<see cref="Pkcs11Module.CheckPinKeepingLogin"/>). Returns whether this session now holds the login.
    /// </summary>
    private (CountedAttempt<PersistedCardState> Attempt, bool LoggedInHere) Counted(bool isPin1, ISession session, string pin)
    {
        var loggedInHere = false;
        var attempt = CountedPinCheck.Run(_file, isPin1 ? PersistedCardState.Pin1 : PersistedCardState.Pin2, () =>
        {
            try
            {
                loggedInHere = Pkcs11Module.CheckPinKeepingLogin(session, pin, () => _token.OpenSession(isPin1, readWrite: true));
                return true;
            }
            catch (Pkcs11Exception e) when (e.RV is CKR.CKR_PIN_INCORRECT or CKR.CKR_PIN_LEN_RANGE or CKR.CKR_PIN_INVALID or CKR.CKR_PIN_LOCKED)
            {
                return false;
            }
        });
        return (attempt, loggedInHere);
    }

    private PinResult Disabled()
    {
        _state = HomeCardState.Disabled;
        return new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, PinSentences.HomeCardDisabled);
    }

    private void ExpireIfIdle()
    {
        if (_state == HomeCardState.CryptoReady && _options.Time.GetUtcNow() - _lastUse >= _options.IdleTimeout) DropToRemoteAccessWait();
    }

    private void DropToRemoteAccessWait()
    {
        _token.Close();
        SetState(HomeCardState.RemoteAccessWait);
    }

    private void SetState(HomeCardState state)
    {
        _state = state;
        PersistState();
    }

    private void PersistState()
    {
        Interlocked.Increment(ref _writes);
        var state = _state;
        var idle = state == HomeCardState.CryptoReady ? _lastUse + _options.IdleTimeout : (DateTimeOffset?)null;
        _file.Locked(() =>
        {
            var p = _file.Read();
            _file.Write(p with { State = p.Disabled ? HomeCardState.Disabled : state, IdleExpiresAt = idle });
            return 0;
        });
        _persistedIdle = idle;
    }

    /// <summary>The card is closing: a ready or waiting card is Locked from now on.</summary>
    public void Close()
    {
        lock (Gate)
        {
            _token.Close();
            if (_state is HomeCardState.CryptoReady or HomeCardState.RemoteAccessWait)
            {
                _state = HomeCardState.Locked;
                PersistState();
            }
        }
    }
}
