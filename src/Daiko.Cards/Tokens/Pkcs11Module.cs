using System.Reflection;
using System.Runtime.InteropServices;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Tokens;

/// <summary>
/// One loaded PKCS#11 module per process (SoftHSM2 reads its configuration once, at C_Initialize).
/// Reference-counted: the module is finalized when the last user disposes its handle, so tests can
/// switch SoftHSM2 configurations between cards.
/// </summary>
internal sealed class Pkcs11Module : IDisposable
{
    public const string DefaultSoftHsmPath = "/usr/lib/softhsm/libsofthsm2.so";

    private static readonly object Gate = new();
    private static Pkcs11Module? _current;
    private static int _resolverInstalled;

    private readonly string _path;
    private readonly string? _softHsmConf;
    private int _references;

    private Pkcs11Module(string path, string? softHsmConf)
    {
        _path = path;
        _softHsmConf = softHsmConf;
        Factories = new Pkcs11InteropFactories();
        Library = Factories.Pkcs11LibraryFactory.LoadPkcs11Library(Factories, path, AppType.MultiThreaded);
    }

    public Pkcs11InteropFactories Factories { get; }

    public IPkcs11Library Library { get; private set; }

    /// <summary>
    /// Finalizes the module and initializes it again, so that it reads afresh what another process
    /// changed in its tokens (SoftHSM2 keeps a token's PIN data from C_Initialize: new PINs set by
    /// <c>home card unblock</c> would otherwise not be seen). Every session of this process ends.
    /// </summary>
    public void Reinitialize()
    {
        lock (Gate)
        {
            Library.Dispose();
            Library = Factories.Pkcs11LibraryFactory.LoadPkcs11Library(Factories, _path, AppType.MultiThreaded);
        }
    }

    /// <summary>Acquires the module at <paramref name="path"/>; for SoftHSM2, <paramref name="softHsmConf"/> selects its token store.</summary>
    public static Pkcs11Module Acquire(string path, string? softHsmConf)
    {
        InstallResolver();
        lock (Gate)
        {
            if (_current is not null)
            {
                if (_current._path != path || _current._softHsmConf != softHsmConf)
                {
                    throw new InvalidOperationException("another home card's PKCS#11 module is already open in this process; close it first");
                }
                _current._references++;
                return _current;
            }
            if (softHsmConf is not null)
            {
                // SoftHSM2 calls getenv() in C_Initialize: the variable must be in the native environment,
                // which Environment.SetEnvironmentVariable does not touch on Unix.
                Environment.SetEnvironmentVariable("SOFTHSM2_CONF", softHsmConf);
                if (SetEnv("SOFTHSM2_CONF", softHsmConf, 1) != 0) throw new InvalidOperationException("could not set SOFTHSM2_CONF");
            }
            if (!File.Exists(path)) throw new FileNotFoundException($"PKCS#11 module not found at {path} (install softhsm2, or pass --pkcs11-module)");
            _current = new Pkcs11Module(path, softHsmConf) { _references = 1 };
            return _current;
        }
    }

    [DllImport("libc", EntryPoint = "setenv", CharSet = CharSet.Ansi)]
    private static extern int SetEnv(string name, string value, int overwrite);

    public void Dispose()
    {
        lock (Gate)
        {
            if (--_references > 0) return;
            Library.Dispose();
            if (ReferenceEquals(_current, this)) _current = null;
        }
    }

    /// <summary>
    /// Pkcs11Interop 5.3 imports "libdl", which glibc 2.34+ ships only as libdl.so.2: map it once.
    /// </summary>
    private static void InstallResolver()
    {
        if (Interlocked.Exchange(ref _resolverInstalled, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(CKR).Assembly, (name, assembly, searchPath) =>
        {
            if (name == "libdl" && NativeLibrary.TryLoad("libdl.so.2", assembly, searchPath, out var handle)) return handle;
            return IntPtr.Zero;
        });
    }

    /// <summary>
    /// How often a token lookup, or the site's own login, is tried while SoftHSM2's file store is busy
    /// (another process rewriting the token's files answers "no such token" or a general error for a
    /// moment); the pauses grow by 10 ms a try, about 0.66 s in all. Twelve processes opening the site
    /// token at once outlasted five tries (0.1 s) on a loaded machine, and now and then eight (0.28 s)
    /// while the test suite ran beside them.
    /// </summary>
    private const int BusyStoreAttempts = 12;

    /// <summary>
    /// The slot holding the token with this label. SoftHSM2 rewrites a token's file on every C_Login
    /// (it keeps CKF_USER_PIN_COUNT_LOW there), and another process reading it at that moment gets
    /// CKR_GENERAL_ERROR or misses the token altogether: such a read is retried briefly before it fails.
    /// </summary>
    /// <param name="expectPresent">false when absence is the normal answer (creating a token): no retries.</param>
    public ISlot? FindSlot(string tokenLabel, bool expectPresent = true)
    {
        var attempts = expectPresent ? BusyStoreAttempts : 1;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var slot = Library.GetSlotList(SlotsType.WithTokenPresent).FirstOrDefault(s => s.GetTokenInfo().Label.Trim() == tokenLabel);
                if (slot is not null || attempt == attempts) return slot;
            }
            catch (Pkcs11Exception e) when (e.RV is CKR.CKR_GENERAL_ERROR or CKR.CKR_DEVICE_ERROR && attempt < attempts)
            {
            }
            Thread.Sleep(10 * attempt);
        }
    }

    /// <summary>
    /// <see cref="FindSlot"/> for a token being opened, before any session of this module exists: a
    /// token whose files another process was rewriting when SoftHSM2 looked can stay out of its slot list
    /// for longer than the lookup's tries; when this caller is the module's only user, the module is
    /// loaded again and the token looked for again (twice at most).
    /// </summary>
    public ISlot? FindSlotAtOpen(string tokenLabel)
    {
        for (var reload = 0; ; reload++)
        {
            if (FindSlot(tokenLabel) is { } slot) return slot;
            if (!ReloadAtOpen(reload)) return null;
        }
    }

    /// <summary>
    /// After an open that SoftHSM2 answered from a stale view of a token (another process was rewriting
    /// its files: the token missing, its login "PIN not initialized"), with <paramref name="reloadsSoFar"/>
    /// reloads behind it: loads the module anew so that the token's files are read afresh, and says the
    /// open may be tried again — when the caller is the module's only user, twice at most. Every slot and
    /// session of the old load is gone after it.
    /// </summary>
    public bool ReloadAtOpen(int reloadsSoFar) => reloadsSoFar < 2 && ReloadIfSoleUser();

    private bool ReloadIfSoleUser()
    {
        lock (Gate)
        {
            // Checked and reloaded under the one lock: no other user can acquire the module in between.
            if (_references != 1) return false;
            Reinitialize();
            return true;
        }
    }

    /// <summary>
    /// C_Login as the user, with the PIN always checked by the token: a PKCS#11 login belongs to the
    /// whole token, so when another session of this process is logged in already the token answers
    /// "already logged in" without looking at the PIN — then it is logged out and in again. A wrong PIN
    /// throws CKR_PIN_INCORRECT (and leaves the token logged out). With <paramref name="retryBusyStore"/>
    /// (the site's own credential, read from a file: no one's guess), a login answered CKR_GENERAL_ERROR or
    /// CKR_USER_PIN_NOT_INITIALIZED is tried again briefly — SoftHSM2 answers so, without checking the
    /// PIN, when another process rewrites the token's file at that moment (many processes logging in at
    /// once). Never for an owner's PIN: a hardware token may count a wrong PIN before such an answer.
    /// </summary>
    public static void LoginChecked(ISession session, string pin, bool retryBusyStore = false)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                session.Login(CKU.CKU_USER, pin);
                return;
            }
            catch (Pkcs11Exception e) when (e.RV == CKR.CKR_USER_ALREADY_LOGGED_IN)
            {
                session.Logout();
                session.Login(CKU.CKU_USER, pin);
                return;
            }
            catch (Pkcs11Exception e) when (retryBusyStore && e.RV is CKR.CKR_GENERAL_ERROR or CKR.CKR_USER_PIN_NOT_INITIALIZED && attempt < BusyStoreAttempts)
            {
                Thread.Sleep(10 * attempt);
            }
        }
    }

    /// <summary>
    /// Checks the user PIN with the token without disturbing a login another session of this process
    /// holds (the home card's ready session, signing for other devices): when the token is not logged in,
    /// C_Login, and this session now holds the login (true); when it is, C_SetPIN(pin, pin) — the token
    /// checks the old PIN itself and the login stays as it was (false). A wrong PIN throws
    /// CKR_PIN_INCORRECT either way and logs nobody out.
    /// </summary>
    public static bool CheckPinKeepingLogin(ISession session, string pin, Func<ISession> openReadWrite)
    {
        try
        {
            session.Login(CKU.CKU_USER, pin);
            return true;
        }
        catch (Pkcs11Exception e) when (e.RV == CKR.CKR_USER_ALREADY_LOGGED_IN)
        {
            // C_SetPIN needs a read-write session; the caller's may be read-only.
            using var readWrite = openReadWrite();
            readWrite.SetPin(pin, pin);
            return false;
        }
    }

    /// <summary>A slot whose token is not initialized yet (SoftHSM2 always offers one).</summary>
    public ISlot FreeSlot() =>
        Library.GetSlotList(SlotsType.WithTokenPresent).FirstOrDefault(s => !s.GetTokenInfo().TokenFlags.TokenInitialized)
        ?? throw new InvalidOperationException("the PKCS#11 module has no uninitialized token slot");
}
