using System.Security.Cryptography;
using System.Text.Json;
using Daiko.Cards.Access;
using Daiko.Cards.Pins;
using Net.Pkcs11Interop.Common;

namespace Daiko.Cards;

/// <summary>
/// The terminal's access card (seed Figs. 5, 7): its device key, in a file encrypted under the
/// access-card PIN (<see cref="FileDeviceKey"/>) or generated non-extractable on a PKCS#11 token
/// (<see cref="CreateOnToken"/>). Locked → (PIN or biometric) Accessible → (done, or 10 minutes idle)
/// Locked; three wrong PINs destroy the key (on a token, Daiko forgets the token key — it cannot delete
/// it without the PIN — and the token's own retry counter guards it; the terminal must enroll again
/// either way). PINs are counted by the same guard as the home card's (<see cref="CountedPinCheck"/>).
/// </summary>
public sealed class AccessCard : IDisposable
{
    public const int DefaultIterations = FileDeviceKey.DefaultIterations;

    private readonly string _directory;
    private readonly TimeProvider _time;
    private readonly TimeSpan _idleTimeout;
    private readonly CounterFile<PersistedAccessCardState> _counters;
    private readonly object _gate = new();
    private ECDsa? _key;
    private TokenDeviceKey? _tokenKey;
    private DateTimeOffset _lastUse;
    private AccessCardToken? _token;

    private AccessCard(string directory, TimeProvider? time, TimeSpan? idleTimeout)
    {
        _directory = directory;
        _time = time ?? TimeProvider.System;
        _idleTimeout = idleTimeout ?? TimeSpan.FromMinutes(10);
        _counters = PersistedAccessCardState.File(directory);
        PublicKeyInfo = File.Exists(PublicPath) ? File.ReadAllBytes(PublicPath) : [];
    }

    /// <summary>The file whose presence means the key exists (and which Destroy wipes): the encrypted key, or the token reference.</summary>
    private string KeyPath => _token is null ? FileKeyPath(_directory) : TokenConfigPath(_directory);

    private static string FileKeyPath(string directory) => Path.Combine(directory, "device-key.p8");

    private static string TokenConfigPath(string directory) => Path.Combine(directory, "device-key.token.json");

    /// <summary>Where the device key lives: "file" or "pkcs11".</summary>
    public string Storage => _token is null ? "file" : "pkcs11";

    private string PublicPath => Path.Combine(_directory, "device-key.pub");

    /// <summary>The device public key (SubjectPublicKeyInfo DER), readable while locked.</summary>
    public byte[] PublicKeyInfo { get; private set; }

    public static bool Exists(string directory) => File.Exists(FileKeyPath(directory)) || File.Exists(TokenConfigPath(directory));

    /// <summary>Creates a new device key under <paramref name="pin"/> (enrollment).</summary>
    public static AccessCard Create(string directory, string pin, int iterations = DefaultIterations, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        if (pin.Length is < 4 or > 64) throw new ArgumentException("the access-card PIN must be 4 to 64 characters", nameof(pin));
        Directory.CreateDirectory(directory);
        var card = new AccessCard(directory, time, idleTimeout);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        FileDeviceKey.Write(card.KeyPath, key, pin, iterations);
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

    public static AccessCard Open(string directory, TimeProvider? time = null, TimeSpan? idleTimeout = null)
    {
        var card = new AccessCard(directory, time, idleTimeout);
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
                return FileDeviceKey.Read(KeyPath, pin);
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
            CardFiles.Wipe(KeyPath);
        }
        catch (FileNotFoundException)
        {
            // Another opener of this card destroyed it first.
        }
    }

    public void Dispose() => Lock();
}
