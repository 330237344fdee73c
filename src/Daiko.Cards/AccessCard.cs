using System.Security.Cryptography;
using Daiko.Cards.Tokens;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards;

public enum AccessCardState
{
    Locked,
    Accessible,

    /// <summary>Three wrong PINs destroyed the key: the terminal must enroll again.</summary>
    Destroyed,
}

/// <summary>
/// A platform biometric hook (fingerprint, face): on success it releases the secret that unlocks the
/// access card, as a platform keystore would.
/// </summary>
public interface IBiometricUnlock
{
    /// <summary>Returns the unlock secret after a successful biometric check, or null.</summary>
    string? Release();
}

/// <summary>
/// A PKCS#11 token that holds the device key instead of a file: the token must exist already, its user
/// PIN being the access-card PIN (as a smart card comes). <paramref name="SoftHsmConf"/> selects a
/// SoftHSM2 token store; null uses the environment's SOFTHSM2_CONF.
/// </summary>
public sealed record AccessCardToken(string ModulePath, string TokenLabel, string? SoftHsmConf = null);

/// <summary>
/// The terminal's access card (seed Figs. 5, 7): its device key, stored as a PKCS#8
/// EncryptedPrivateKeyInfo (PBES2, PBKDF2-SHA256, AES-256-CBC) under the access-card PIN, or generated
/// non-extractable on a PKCS#11 token (<see cref="CreateOnToken"/>). Locked → (PIN or biometric)
/// Accessible → (done, or 10 minutes idle) Locked; three wrong PINs destroy the key (on a token, Daiko
/// forgets the token key — it cannot delete it without the PIN — and the token's own retry counter
/// guards it; the terminal must enroll again either way).
/// </summary>
public sealed class AccessCard : IDisposable
{
    public const int DefaultIterations = 600_000;

    private readonly string _directory;
    private readonly TimeProvider _time;
    private readonly TimeSpan _idleTimeout;
    private readonly CardStateFile _counters;
    private readonly object _gate = new();
    private ECDsa? _key;
    private DateTimeOffset _lastUse;
    private AccessCardToken? _token;
    private Tokens.Pkcs11Module? _module;
    private ISession? _session;

    private AccessCard(string directory, TimeProvider? time, TimeSpan? idleTimeout)
    {
        _directory = directory;
        _time = time ?? TimeProvider.System;
        _idleTimeout = idleTimeout ?? TimeSpan.FromMinutes(10);
        _counters = new CardStateFile(Path.Combine(directory, "access-card.json"));
        PublicKeyInfo = File.Exists(PublicPath) ? File.ReadAllBytes(PublicPath) : [];
    }

    /// <summary>The file whose presence means the key exists (and which Destroy wipes): the encrypted key, or the token reference.</summary>
    private string KeyPath => _token is null ? Path.Combine(_directory, "device-key.p8") : TokenConfigPath(_directory);

    private static string TokenConfigPath(string directory) => Path.Combine(directory, "device-key.token.json");

    private static readonly byte[] TokenKeyId = "daiko-device-key"u8.ToArray();

    /// <summary>Where the device key lives: "file" or "pkcs11".</summary>
    public string Storage => _token is null ? "file" : "pkcs11";

    private string PublicPath => Path.Combine(_directory, "device-key.pub");

    /// <summary>The device public key (SubjectPublicKeyInfo DER), readable while locked.</summary>
    public byte[] PublicKeyInfo { get; private set; }

    public static bool Exists(string directory) => File.Exists(Path.Combine(directory, "device-key.p8")) || File.Exists(TokenConfigPath(directory));

    /// <summary>Creates a new device key under <paramref name="pin"/> (enrollment).</summary>
    public static AccessCard Create(string directory, string pin, int iterations = DefaultIterations, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        if (pin.Length is < 4 or > 64) throw new ArgumentException("the access-card PIN must be 4 to 64 characters", nameof(pin));
        Directory.CreateDirectory(directory);
        var card = new AccessCard(directory, time, idleTimeout);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var encrypted = key.ExportEncryptedPkcs8PrivateKey(pin, new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, iterations));
        WritePrivate(card.KeyPath, encrypted);
        File.WriteAllBytes(card.PublicPath, key.ExportSubjectPublicKeyInfo());
        card.PublicKeyInfo = key.ExportSubjectPublicKeyInfo();
        card._counters.Write(new PersistedCardState());
        return card;
    }

    /// <summary>
    /// Creates the device key on a PKCS#11 token (enrollment): P-256, sensitive, non-extractable,
    /// generated in the token with <paramref name="pin"/> as the token's user PIN.
    /// </summary>
    public static AccessCard CreateOnToken(string directory, string pin, AccessCardToken token, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        Directory.CreateDirectory(directory);
        byte[] spki;
        using (var module = Tokens.Pkcs11Module.Acquire(token.ModulePath, token.SoftHsmConf))
        {
            var slot = module.FindSlot(token.TokenLabel)
                ?? throw new InvalidOperationException($"no PKCS#11 token labelled '{token.TokenLabel}' in {token.ModulePath}");
            using var session = slot.OpenSession(SessionType.ReadWrite);
            try
            {
                Tokens.Pkcs11Module.LoginChecked(session, pin);
            }
            catch (Pkcs11Exception e) when (e.RV is CKR.CKR_PIN_INCORRECT or CKR.CKR_PIN_LEN_RANGE or CKR.CKR_PIN_INVALID)
            {
                throw new ArgumentException($"the access-card PIN does not open the token '{token.TokenLabel}'", nameof(pin));
            }
            try
            {
                var f = module.Factories.ObjectAttributeFactory;
                foreach (var old in session.FindAllObjects([f.Create(CKA.CKA_ID, TokenKeyId)])) session.DestroyObject(old);
                spki = HomeCard.GenerateKey(module, session, HomeCardKeyType.P256, TokenKeyId, "daiko device key");
            }
            finally
            {
                session.Logout();
            }
        }
        var card = new AccessCard(directory, time, idleTimeout) { _token = token };
        File.WriteAllText(TokenConfigPath(directory), System.Text.Json.JsonSerializer.Serialize(token));
        File.WriteAllBytes(card.PublicPath, spki);
        card.PublicKeyInfo = spki;
        card._counters.Write(new PersistedCardState());
        return card;
    }

    public static AccessCard Open(string directory, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        var card = new AccessCard(directory, time, idleTimeout);
        if (File.Exists(TokenConfigPath(directory)))
        {
            card._token = System.Text.Json.JsonSerializer.Deserialize<AccessCardToken>(File.ReadAllText(TokenConfigPath(directory)));
        }
        if (!File.Exists(card.PublicPath)) throw new FileNotFoundException($"no access card in {directory}; enroll this terminal first");
        return card;
    }

    public AccessCardState State
    {
        get
        {
            lock (_gate)
            {
                if (!File.Exists(KeyPath)) return AccessCardState.Destroyed;
                ExpireIfIdle();
                return _key is null ? AccessCardState.Locked : AccessCardState.Accessible;
            }
        }
    }

    public int TriesLeft => Math.Max(0, HomeCardOptions.MaxTries - _counters.Read().Pin1Failures);

    /// <summary>Unlocks with the PIN; a wrong PIN costs a try, the third destroys the key.</summary>
    public PinResult Unlock(string pin)
    {
        lock (_gate)
        {
            if (!File.Exists(KeyPath))
            {
                return new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, "the access card was destroyed after 3 wrong PINs; enroll this terminal again");
            }
            if (_key is not null) return new PinResult(PinOutcome.Accepted, HomeCardOptions.MaxTries, HomeCardState.RemoteAccessWait, "the access card is already unlocked");
            // The whole attempt runs under the card's file lock: terminals' processes are checked one
            // at a time, so a fourth attempt never decrypts anything.
            return _counters.Locked(() =>
            {
                if (!File.Exists(KeyPath))
                {
                    return new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, "the access card was destroyed after 3 wrong PINs; enroll this terminal again");
                }
                var before = _counters.Read();
                if (before.Pin1Failures >= HomeCardOptions.MaxTries)
                {
                    // Three tries were counted and the last never finished (a crash): that was the third strike.
                    Destroy();
                    return new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, "the access card was destroyed after 3 wrong PINs; enroll this terminal again");
                }
                var counted = before with { Pin1Failures = before.Pin1Failures + 1 };
                _counters.Write(counted);
                try
                {
                    _key = _token is null ? DecryptKey(pin) : OpenTokenKey(pin);
                    _lastUse = _time.GetUtcNow();
                    _counters.Write(new PersistedCardState());
                    return new PinResult(PinOutcome.Accepted, HomeCardOptions.MaxTries, HomeCardState.RemoteAccessWait, "access card unlocked");
                }
                catch (CardNotReadyException)
                {
                    _counters.Write(before);
                    throw;
                }
                catch (Pkcs11Exception e) when (e.RV is not (CKR.CKR_PIN_INCORRECT or CKR.CKR_PIN_LEN_RANGE or CKR.CKR_PIN_INVALID))
                {
                    // The token gave no verdict on the PIN: the try is given back.
                    _counters.Write(before);
                    throw new CardNotReadyException($"the access card's token did not answer ({e.RV}); nothing was counted");
                }
                catch (Exception e) when (e is CryptographicException or Pkcs11Exception)
                {
                    if (counted.Pin1Failures >= HomeCardOptions.MaxTries)
                    {
                        Destroy();
                        return new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, "wrong access-card PIN: the device key was destroyed after 3 wrong entries; enroll this terminal again");
                    }
                    var left = HomeCardOptions.MaxTries - counted.Pin1Failures;
                    return new PinResult(PinOutcome.Wrong, left, HomeCardState.Locked, $"wrong access-card PIN: {left} {(left == 1 ? "try" : "tries")} left");
                }
            });
        }
    }

    private ECDsa DecryptKey(string pin)
    {
        var key = ECDsa.Create();
        try
        {
            key.ImportEncryptedPkcs8PrivateKey(pin, File.ReadAllBytes(KeyPath), out _);
            return key;
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    /// <summary>Logs in to the token with the PIN and keeps the session: the key signs there until Lock.</summary>
    private ECDsa OpenTokenKey(string pin)
    {
        var module = Tokens.Pkcs11Module.Acquire(_token!.ModulePath, _token.SoftHsmConf);
        ISession? session = null;
        try
        {
            var slot = module.FindSlot(_token.TokenLabel)
                ?? throw new CardNotReadyException($"the access card's token '{_token.TokenLabel}' is not present");
            session = slot.OpenSession(SessionType.ReadOnly);
            Tokens.Pkcs11Module.LoginChecked(session, pin);
            var f = module.Factories.ObjectAttributeFactory;
            var key = session.FindAllObjects([f.Create(CKA.CKA_CLASS, CKO.CKO_PRIVATE_KEY), f.Create(CKA.CKA_ID, TokenKeyId)]).FirstOrDefault()
                ?? throw new CardNotReadyException("the device key is no longer on the access card's token; enroll this terminal again");
            using var publicKey = ECDsa.Create();
            publicKey.ImportSubjectPublicKeyInfo(PublicKeyInfo, out _);
            _module = module;
            _session = session;
            return new SessionECDsa(session, module, key, publicKey.ExportParameters(false));
        }
        catch
        {
            session?.Dispose();
            module.Dispose();
            throw;
        }
    }

    private void CloseToken()
    {
        if (_session is not null)
        {
            try { _session.Logout(); } catch (Pkcs11Exception) { }
            _session.Dispose();
            _session = null;
        }
        _module?.Dispose();
        _module = null;
    }

    /// <summary>Unlocks through a platform biometric check.</summary>
    public PinResult Unlock(IBiometricUnlock biometric)
    {
        var secret = biometric.Release();
        return secret is null
            ? new PinResult(PinOutcome.Wrong, TriesLeft, HomeCardState.Locked, "the biometric check failed; use the PIN")
            : Unlock(secret);
    }

    /// <summary>The device key, only while accessible; each use resets the idle clock.</summary>
    public ECDsa DeviceKey
    {
        get
        {
            lock (_gate)
            {
                ExpireIfIdle();
                var key = _key ?? throw new CardNotReadyException(File.Exists(KeyPath)
                    ? "the access card is locked: unlock it with its PIN"
                    : "the access card was destroyed; enroll this terminal again");
                _lastUse = _time.GetUtcNow();
                return key;
            }
        }
    }

    /// <summary>"Done": back to Locked.</summary>
    public void Lock()
    {
        lock (_gate)
        {
            _key?.Dispose();
            _key = null;
            CloseToken();
        }
    }

    private void ExpireIfIdle()
    {
        if (_key is not null && _time.GetUtcNow() - _lastUse >= _idleTimeout)
        {
            _key.Dispose();
            _key = null;
            CloseToken();
        }
    }

    private void Destroy()
    {
        _key?.Dispose();
        _key = null;
        CloseToken();
        var length = new FileInfo(KeyPath).Length;
        using (var stream = new FileStream(KeyPath, FileMode.Open, FileAccess.Write))
        {
            stream.Write(new byte[length]);
            stream.Flush(flushToDisk: true);
        }
        File.Delete(KeyPath);
        CardStateFile.FsyncDirectory(_directory);
    }

    private static void WritePrivate(string path, byte[] bytes)
    {
        using (var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
    }

    public void Dispose() => Lock();
}
