using System.Collections.Concurrent;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Tokens;

/// <summary>
/// Sessions on the key token that sign side by side. A PKCS#11 login belongs to the token for the
/// whole application, so every session opened on it while the ready session holds PIN2's login
/// signs: signatures for different devices (and a purse batch's answers) run at once instead of
/// queueing on one session. At most <see cref="Size"/> are open (<see cref="SizeFor"/>).
/// A signature holds the pool shared; <see cref="Close"/> takes it exclusively, so the card's
/// logout waits for the signatures in flight and none runs after the card left crypto-ready.
/// </summary>
internal sealed class SigningSessions : IDisposable
{
    private readonly ISlot _slot;
    private readonly ConcurrentBag<ISession> _idle = new();
    private readonly SemaphoreSlim _free;
    private readonly ReaderWriterLockSlim _use = new(LockRecursionPolicy.NoRecursion);
    private bool _closed;

    public SigningSessions(ISlot slot, int size)
    {
        _slot = slot;
        Size = size;
        _free = new SemaphoreSlim(size, size);
    }

    /// <summary>How many sessions may sign at once.</summary>
    public int Size { get; }

    /// <summary>Runs in each signature once it holds its session, before the token signs (tests use it to see two at once).</summary>
    internal Action? Leased { get; set; }

    /// <summary>
    /// The pool's size for a token: its session limit less the ready session's when it states one,
    /// and no more than the processors that can drive them (a software token signs on this machine's
    /// cores; more sessions than cores only queue inside the token).
    /// </summary>
    public static int SizeFor(ISlot slot)
    {
        var info = slot.GetTokenInfo();
        var cores = Math.Max(2, Environment.ProcessorCount);
        // CK_EFFECTIVELY_INFINITE (0) and CK_UNAVAILABLE_INFORMATION (all ones) state no limit.
        var limit = info.MaxSessionCount;
        if (limit == 0 || limit == ulong.MaxValue || limit == uint.MaxValue) return cores;
        return (int)Math.Clamp((long)Math.Min(limit - 1, (ulong)cores), 1, cores);
    }

    /// <summary>
    /// Enters a signature. Call it holding the card's lock (after checking the card is ready), so that
    /// no <see cref="Close"/> is waiting; then release the lock and <see cref="Hold.Sign{T}"/>.
    /// </summary>
    public Hold Enter()
    {
        _use.EnterReadLock();
        if (!_closed) return new Hold(this);
        _use.ExitReadLock();
        throw new CardNotReadyException("the home card is not crypto-ready");
    }

    /// <summary>Waits for the signatures in flight, then closes every session (before the token is logged out).</summary>
    public void Close()
    {
        _use.EnterWriteLock();
        try
        {
            _closed = true;
            while (_idle.TryTake(out var session)) session.Dispose();
        }
        finally
        {
            _use.ExitWriteLock();
        }
    }

    public void Dispose()
    {
        Close();
        _use.Dispose();
        _free.Dispose();
    }

    /// <summary>One signature's share of the pool; dispose it on the thread that entered.</summary>
    public readonly struct Hold(SigningSessions pool) : IDisposable
    {
        /// <summary>Runs <paramref name="work"/> on a session of its own (waiting while all are busy).</summary>
        public T Sign<T>(Func<ISession, T> work)
        {
            pool._free.Wait();
            try
            {
                if (!pool._idle.TryTake(out var session)) session = pool._slot.OpenSession(Net.Pkcs11Interop.Common.SessionType.ReadOnly);
                try
                {
                    pool.Leased?.Invoke();
                    var result = work(session);
                    pool._idle.Add(session);
                    return result;
                }
                catch
                {
                    // A session whose operation failed may be left mid-operation: it is not reused.
                    session.Dispose();
                    throw;
                }
            }
            finally
            {
                pool._free.Release();
            }
        }

        public void Dispose() => pool._use.ExitReadLock();
    }
}
