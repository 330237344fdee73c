using System.Security.Cryptography;

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
/// The terminal's access card (seed Figs. 5, 7): its device key, stored as a PKCS#8
/// EncryptedPrivateKeyInfo (PBES2, PBKDF2-SHA256, AES-256-CBC) under the access-card PIN. Locked →
/// (PIN or biometric) Accessible → (done, or 10 minutes idle) Locked; three wrong PINs destroy the key.
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

    private AccessCard(string directory, TimeProvider? time, TimeSpan? idleTimeout)
    {
        _directory = directory;
        _time = time ?? TimeProvider.System;
        _idleTimeout = idleTimeout ?? TimeSpan.FromMinutes(10);
        _counters = new CardStateFile(Path.Combine(directory, "access-card.json"));
        PublicKeyInfo = File.Exists(PublicPath) ? File.ReadAllBytes(PublicPath) : [];
    }

    private string KeyPath => Path.Combine(_directory, "device-key.p8");

    private string PublicPath => Path.Combine(_directory, "device-key.pub");

    /// <summary>The device public key (SubjectPublicKeyInfo DER), readable while locked.</summary>
    public byte[] PublicKeyInfo { get; private set; }

    public static bool Exists(string directory) => File.Exists(Path.Combine(directory, "device-key.p8"));

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

    public static AccessCard Open(string directory, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        var card = new AccessCard(directory, time, idleTimeout);
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
                    var key = ECDsa.Create();
                    key.ImportEncryptedPkcs8PrivateKey(pin, File.ReadAllBytes(KeyPath), out _);
                    _key = key;
                    _lastUse = _time.GetUtcNow();
                    _counters.Write(new PersistedCardState());
                    return new PinResult(PinOutcome.Accepted, HomeCardOptions.MaxTries, HomeCardState.RemoteAccessWait, "access card unlocked");
                }
                catch (CryptographicException)
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
        }
    }

    private void ExpireIfIdle()
    {
        if (_key is not null && _time.GetUtcNow() - _lastUse >= _idleTimeout)
        {
            _key.Dispose();
            _key = null;
        }
    }

    private void Destroy()
    {
        _key?.Dispose();
        _key = null;
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
