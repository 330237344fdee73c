using System.Security.Cryptography;
using System.Text.Json;
using Daiko.Cards.Access;
using Daiko.Cards.Pins;
using Net.Pkcs11Interop.Common;

namespace Daiko.Cards;

/// <summary>
/// The terminal's access card (seed Figs. 5, 7): its device key, in a file encrypted under
/// Argon2id of the access-card PIN (<see cref="FileDeviceKey"/>; at least 6 characters, the cost
/// calibrated at enrollment) or generated non-extractable on a PKCS#11 token
/// (<see cref="CreateOnToken"/>). Locked → (PIN or biometric) Accessible → (done, or 10 minutes idle)
/// Locked; three wrong PINs destroy the key (on a token, Daiko forgets the token key — it cannot delete
/// it without the PIN — and the token's own retry counter guards it; the terminal must enroll again
/// either way). PINs are counted by the same guard as the home card's (<see cref="CountedPinCheck"/>).
/// </summary>
public sealed class AccessCard : IDisposable
{
    /// <summary>The shortest access-card PIN a file-backed card accepts (a token keeps its own rules).</summary>
    public const int MinimumFilePinLength = FileDeviceKey.MinimumPinLength;

    private readonly string _directory;
    private readonly TimeProvider _time;
    private readonly TimeSpan _idleTimeout;
    private readonly CounterFile<PersistedAccessCardState> _counters;
    private readonly object _gate = new();
    private ECDsa? _key;
    private TokenDeviceKey? _tokenKey;
    private DateTimeOffset _lastUse;
    private AccessCardToken? _token;
    /// <summary>The parameters a migration or PIN change writes with; null (the product) calibrates at each.</summary>
    private readonly AccessCardKdf? _fixedKdf;

    private AccessCard(string directory, TimeProvider? time, TimeSpan? idleTimeout, AccessCardKdf? kdf = null)
    {
        _directory = directory;
        _fixedKdf = kdf;
        _time = time ?? TimeProvider.System;
        _idleTimeout = idleTimeout ?? TimeSpan.FromMinutes(10);
        _counters = PersistedAccessCardState.File(directory);
        PublicKeyInfo = File.Exists(PublicPath) ? File.ReadAllBytes(PublicPath) : [];
    }

    /// <summary>The file whose presence means the key exists (and which Destroy wipes): the encrypted key, or the token reference.</summary>
    private string KeyPath => _token is null ? FileKeyPath(_directory) : TokenConfigPath(_directory);

    /// <summary>device-key.enc, or a legacy device-key.p8 not migrated yet.</summary>
    private static string FileKeyPath(string directory)
    {
        var current = Path.Combine(directory, FileDeviceKey.FileName);
        var legacy = Path.Combine(directory, FileDeviceKey.LegacyFileName);
        return !File.Exists(current) && File.Exists(legacy) ? legacy : current;
    }

    private bool IsLegacyFile => _token is null && Path.GetFileName(KeyPath) == FileDeviceKey.LegacyFileName;

    /// <summary>The Argon2id parameters stored in the key file (a file-backed card).</summary>
    internal AccessCardKdf KdfParameters => FileDeviceKey.ReadParameters(KeyPath);

    private static string TokenConfigPath(string directory) => Path.Combine(directory, "device-key.token.json");

    /// <summary>Where the device key lives: "file" or "pkcs11".</summary>
    public string Storage => _token is null ? "file" : "pkcs11";

    private string PublicPath => Path.Combine(_directory, "device-key.pub");

    /// <summary>The device public key (SubjectPublicKeyInfo DER), readable while locked.</summary>
    public byte[] PublicKeyInfo { get; private set; }

    public static bool Exists(string directory) => File.Exists(FileKeyPath(directory)) || File.Exists(TokenConfigPath(directory));

    /// <summary>
    /// Creates a new device key under <paramref name="pin"/> (enrollment; at least 6 characters), with
    /// Argon2id calibrated here to at least half a second per guess.
    /// </summary>
    public static AccessCard Create(string directory, string pin, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        FileDeviceKey.CheckPin(pin);
        return Create(directory, pin, kdf: null, time, idleTimeout);
    }

    /// <summary>
    /// TEST-ONLY when <paramref name="kdf"/> is given: enrollment with explicit KDF parameters (e.g. <see cref="AccessCardKdf.ForTests"/>),
    /// also used for later migrations and PIN changes; null calibrates.
    /// </summary>
    internal static AccessCard Create(string directory, string pin, AccessCardKdf? kdf, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        FileDeviceKey.CheckPin(pin);
        Directory.CreateDirectory(directory);
        var card = new AccessCard(directory, time, idleTimeout, kdf);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        FileDeviceKey.Write(Path.Combine(directory, FileDeviceKey.FileName), key, pin, kdf);
        card.Enrolled(key.ExportSubjectPublicKeyInfo());
        return card;
    }

    /// <summary>
    /// Creates the device key on a PKCS#11 token (enrollment): P-256, sensitive, non-extractable,
    /// generated in the token with <paramref name="pin"/> as the token's user PIN.
    /// </summary>
    public static AccessCard CreateOnToken(string directory, string pin, AccessCardToken token, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        Directory.CreateDirectory(directory);
        var spki = TokenDeviceKey.Generate(token, pin);
        var card = new AccessCard(directory, time, idleTimeout) { _token = token };
        File.WriteAllText(TokenConfigPath(directory), JsonSerializer.Serialize(token));
        card.Enrolled(spki);
        return card;
    }

    private void Enrolled(byte[] spki)
    {
        File.WriteAllBytes(PublicPath, spki);
        PublicKeyInfo = spki;
        _counters.Write(new PersistedAccessCardState());
    }

    public static AccessCard Open(string directory, TimeProvider? time = null, TimeSpan? idleTimeout = null) => Open(directory, null, time, idleTimeout);

    /// <summary>TEST-ONLY when <paramref name="kdf"/> is given: a migration or PIN change writes with it instead of calibrating.</summary>
    internal static AccessCard Open(string directory, AccessCardKdf? kdf, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        var card = new AccessCard(directory, time, idleTimeout, kdf);
        if (File.Exists(TokenConfigPath(directory)))
        {
            card._token = JsonSerializer.Deserialize<AccessCardToken>(File.ReadAllText(TokenConfigPath(directory)));
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

    public int TriesLeft => CountedPinCheck.TriesLeft(_counters.Read().Count);

    /// <summary>Unlocks with the PIN; a wrong PIN costs a try, the third destroys the key.</summary>
    public AccessCardUnlock Unlock(string pin)
    {
        lock (_gate)
        {
            if (!File.Exists(KeyPath)) return AccessCardUnlock.Destroyed(PinSentences.AccessCardDestroyed);
            if (_key is not null) return new AccessCardUnlock(AccessCardOutcome.Accepted, CountedPinCheck.MaxTries, AccessCardState.Accessible, "the access card is already unlocked");
            // The guard holds the card's file lock: terminals' processes are checked one at a time, and a
            // fourth attempt never decrypts anything.
            ECDsa? opened = null;
            var attempt = CountedPinCheck.Run(_counters, PersistedAccessCardState.Pin, () =>
            {
                opened = TryOpen(pin);
                return opened is not null;
            });
            if (attempt.WasExhausted)
            {
                Destroy();
                return AccessCardUnlock.Destroyed(PinSentences.AccessCardDestroyed);
            }
            if (attempt.Correct)
            {
                if (IsLegacyFile) Migrate(opened!, pin);
                _key = opened;
                _lastUse = _time.GetUtcNow();
                return new AccessCardUnlock(AccessCardOutcome.Accepted, CountedPinCheck.MaxTries, AccessCardState.Accessible, "access card unlocked");
            }
            if (attempt.After.Exhausted)
            {
                Destroy();
                return AccessCardUnlock.Destroyed("wrong access-card PIN: the device key was destroyed after 3 wrong entries; enroll this terminal again");
            }
            var left = CountedPinCheck.TriesLeft(attempt.After.Count);
            return new AccessCardUnlock(AccessCardOutcome.Wrong, left, AccessCardState.Locked, PinSentences.Wrong("access-card PIN", left));
        }
    }

    /// <summary>The decrypted or token-held key, or null for a wrong PIN; throws when there was no verdict.</summary>
    private ECDsa? TryOpen(string pin)
    {
        if (!File.Exists(KeyPath)) throw new CardNotReadyException(PinSentences.AccessCardDestroyed);
        if (_token is null)
        {
            try
            {
                return IsLegacyFile ? FileDeviceKey.ReadLegacy(KeyPath, pin) : FileDeviceKey.Read(KeyPath, pin);
            }
            catch (CryptographicException)
            {
                return null;
            }
        }
        try
        {
            _tokenKey = TokenDeviceKey.Open(_token, pin, PublicKeyInfo);
            return _tokenKey.Key;
        }
        catch (Pkcs11Exception e) when (TokenDeviceKey.IsWrongPin(e.RV))
        {
            return null;
        }
    }

    /// <summary>A key file from before Argon2id is rewritten under it (calibrated) and the old file wiped.</summary>
    private void Migrate(ECDsa key, string pin)
    {
        var legacy = KeyPath;
        FileDeviceKey.Write(Path.Combine(_directory, FileDeviceKey.FileName), key, pin, _fixedKdf);
        CardFiles.Wipe(legacy);
    }

    /// <summary>
    /// Changes the access-card PIN. The old PIN is checked and counted like an unlock (the third wrong
    /// one destroys the key). A file-backed card needs a new PIN of at least 6 characters and is
    /// re-encrypted under freshly calibrated Argon2id; a token card changes the token's user PIN (the
    /// token's own rules apply).
    /// </summary>
    public AccessCardUnlock ChangePin(string oldPin, string newPin)
    {
        if (_token is null) FileDeviceKey.CheckPin(newPin);
        if (string.Equals(oldPin, newPin, StringComparison.Ordinal)) throw new ArgumentException("the new access-card PIN must differ from the old one", nameof(newPin));
        lock (_gate)
        {
            if (!File.Exists(KeyPath)) return AccessCardUnlock.Destroyed(PinSentences.AccessCardDestroyed);
            var attempt = CountedPinCheck.Run(_counters, PersistedAccessCardState.Pin, () =>
            {
                if (_token is not null)
                {
                    try
                    {
                        TokenDeviceKey.ChangePin(_token, oldPin, newPin);
                        return true;
                    }
                    catch (Pkcs11Exception e) when (TokenDeviceKey.IsWrongPin(e.RV))
                    {
                        return false;
                    }
                }
                using var key = TryOpen(oldPin);
                if (key is null) return false;
                var legacy = IsLegacyFile ? KeyPath : null;
                FileDeviceKey.Write(Path.Combine(_directory, FileDeviceKey.FileName), key, newPin, _fixedKdf);
                if (legacy is not null) CardFiles.Wipe(legacy);
                return true;
            });
            if (attempt.WasExhausted || attempt.After.Exhausted)
            {
                Destroy();
                return AccessCardUnlock.Destroyed(attempt.WasExhausted ? PinSentences.AccessCardDestroyed
                    : "wrong access-card PIN: the device key was destroyed after 3 wrong entries; enroll this terminal again");
            }
            if (!attempt.Correct)
            {
                var left = CountedPinCheck.TriesLeft(attempt.After.Count);
                return new AccessCardUnlock(AccessCardOutcome.Wrong, left, State, PinSentences.Wrong("access-card PIN", left));
            }
            return new AccessCardUnlock(AccessCardOutcome.Accepted, CountedPinCheck.MaxTries, _key is null ? AccessCardState.Locked : AccessCardState.Accessible, "access-card PIN changed");
        }
    }

    /// <summary>Unlocks through a platform biometric check.</summary>
    public AccessCardUnlock Unlock(IBiometricUnlock biometric)
    {
        var secret = biometric.Release();
        return secret is null
            ? new AccessCardUnlock(AccessCardOutcome.Wrong, TriesLeft, AccessCardState.Locked, "the biometric check failed; use the PIN")
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
            CloseKey();
        }
    }

    private void CloseKey()
    {
        if (_tokenKey is not null)
        {
            _tokenKey.Dispose();
            _tokenKey = null;
        }
        else
        {
            _key?.Dispose();
        }
        _key = null;
    }

    private void ExpireIfIdle()
    {
        if (_key is not null && _time.GetUtcNow() - _lastUse >= _idleTimeout) CloseKey();
    }

    private void Destroy()
    {
        CloseKey();
        try
        {
            CardFiles.WipeWithNew(KeyPath);
        }
        catch (FileNotFoundException)
        {
            // Another opener of this card destroyed it first.
        }
    }

    public void Dispose() => Lock();
}
