using System.Security.Cryptography;
using Daiko.Cards.Pins;
using Daiko.Cards.Purse;
using Daiko.Cards.Tokens;
using Daiko.Money;
using Daiko.Tls;

namespace Daiko.Cards;

/// <summary>
/// The home card: the user's keys and certificate in a PKCS#11 token, behind the state machine of
/// seed Fig. 6. PIN2 is the key token's user PIN (checked by the token, never stored); PIN1 is the
/// user PIN of a second token, as multi-PIN smart cards appear in PKCS#11; the admin code is both
/// tokens' SO PIN. Failure counters are Daiko's (SoftHSM2 never locks a PIN) and persisted.
/// The token holds two keys with separate jobs: the TLS identity key signs only TLS 1.3 client
/// CertificateVerify content; the purse key signs only money messages (COSE_Sign1).
/// This type composes the parts: <see cref="HomeCardPins"/> (the state machine),
/// <see cref="HomeCardToken"/> (token access and signing), <see cref="HomeCardProvisioning"/> (owner operations).
/// </summary>
public sealed class HomeCard : IHomeCard, IDisposable
{
    private readonly HomeCardOptions _options;
    private readonly HomeCardToken _token;
    private readonly HomeCardPins _pins;
    private readonly HomeCardKeys _keys;
    private readonly HomeCardProvisioning _provisioning;

    /// <summary>
    /// TLS signatures let on to the token at once: no more than its signing pool takes
    /// (<see cref="SigningSessions.Size"/>: the token's session limit, at most one a core; made at the
    /// first signature of a ready card, the same for every pool of this token). The rest wait here
    /// without holding a thread: a handshake waiting for the card would otherwise block a thread-pool
    /// thread in the pool's wait, and many terminals handshaking at once would make the runtime add
    /// threads (each one's stack and allocation caches then stay in the home server's memory). Never
    /// disposed: a signature that outlives the card still gives its turn back, and the semaphore holds
    /// no handle unless asked for one.
    /// </summary>
    private SemaphoreSlim? _tlsTurns;

    private HomeCard(HomeCardOptions options, Pkcs11Module module)
    {
        _options = options;
        _keys = new HomeCardKeys(options);
        _token = new HomeCardToken(options, module);
        _pins = new HomeCardPins(options, _token);
        _provisioning = new HomeCardProvisioning(options, _token, _pins, _keys);
        TlsSigner = new HomeCardTlsSigner(this);
    }

    /// <summary>What a user reads when the card is disabled.</summary>
    public const string DisabledSentence = PinSentences.HomeCardDisabled;

    internal HomeCardOptions Options => _options;

    internal HomeCardToken Token => _token;

    internal HomeCardPins Pins => _pins;

    public HomeCardKeyType KeyType => _keys.Config.KeyType;

    /// <summary>A stable id: hex SHA-256 of the TLS identity key (SubjectPublicKeyInfo).</summary>
    public string CardId => _keys.Config.CardId;

    /// <summary>The user's certificate chain, leaf first (empty until imported).</summary>
    public IReadOnlyList<byte[]> CertificateChain => _keys.Chain;

    /// <summary>Signs TLS 1.3 client CertificateVerify content in the token, and nothing else; only while <see cref="HomeCardState.CryptoReady"/>.</summary>
    public ITlsSigner TlsSigner { get; }

    /// <summary>Counts signatures made (for cost reporting).</summary>
    public TlsCounters? Counters { get; set; }

    public HomeCardState State => _pins.State;

    /// <summary>The TLS identity key's SubjectPublicKeyInfo.</summary>
    public byte[] PublicKeyInfo => _keys.Config.PublicKeyInfo.ToArray();

    /// <summary>The purse key's SubjectPublicKeyInfo (the key id of the card's money messages); null on an old card until its next unlock.</summary>
    public byte[]? PurseKeyInfo => _keys.Config.PurseKeyInfo?.ToArray();

    /// <summary>Creates the tokens and the user's keys; returns the open card (Locked).</summary>
    public static HomeCard Initialize(HomeCardOptions options, HomeCardKeyType keyType, string pin1, string pin2, string adminCode)
    {
        CheckNewPins(pin1, pin2, adminCode);
        Directory.CreateDirectory(options.CardDirectory);
        if (File.Exists(CardConfig.PathOf(options))) throw new InvalidOperationException($"a home card already exists in {options.Directory}");
        if (options.EmbeddedSoftHsm)
        {
            var tokens = Path.Combine(options.CardDirectory, "tokens");
            Directory.CreateDirectory(tokens);
            File.WriteAllText(options.SoftHsmConf!, $"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n");
        }
        var module = Pkcs11Module.Acquire(options.EffectiveModulePath, options.SoftHsmConf);
        try
        {
            HomeCardProvisioning.CreateTokens(options, module, keyType, pin1, pin2, adminCode);
            return new HomeCard(options, module);
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> saying why unless the PINs and admin code suit a new card.</summary>
    public static void CheckNewPins(string pin1, string pin2, string adminCode)
    {
        ValidatePin(pin1, "PIN1");
        ValidatePin(pin2, "PIN2");
        if (adminCode.Length < 8) throw new ArgumentException("the admin code must be at least 8 characters", nameof(adminCode));
        if (string.Equals(pin1, pin2, StringComparison.Ordinal)) throw new ArgumentException("PIN1 and PIN2 must differ", nameof(pin2));
    }

    /// <summary>Opens an existing card (Locked; a disabled card stays disabled).</summary>
    public static HomeCard Open(HomeCardOptions options)
    {
        CardConfig.Load(options);
        var module = Pkcs11Module.Acquire(options.EffectiveModulePath, options.SoftHsmConf);
        try
        {
            if (module.FindSlotAtOpen(options.TokenLabel) is null || module.FindSlotAtOpen(options.Pin1TokenLabel) is null)
            {
                throw new InvalidOperationException($"the home card's tokens ('{options.TokenLabel}') are not present in the PKCS#11 module");
            }
            return new HomeCard(options, module);
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>Reads the persisted status without opening the token (for <c>home card status</c> from another process).</summary>
    public static HomeCardStatus ReadStatus(HomeCardOptions options)
    {
        var config = CardConfig.Load(options);
        var persisted = PersistedCardState.File(options).Read();
        var state = persisted.Disabled ? HomeCardState.Disabled : persisted.State;
        if (state == HomeCardState.CryptoReady && persisted.IdleExpiresAt <= options.Time.GetUtcNow()) state = HomeCardState.RemoteAccessWait;
        return new HomeCardStatus(state, CountedPinCheck.TriesLeft(persisted.Pin1Failures), CountedPinCheck.TriesLeft(persisted.Pin2Failures),
            config.KeyType, HomeCardKeys.HasCertificate(options), config.CardId,
            state == HomeCardState.CryptoReady ? persisted.IdleExpiresAt : null, options.TokenLabel);
    }

    public HomeCardStatus GetStatus()
    {
        var (state, pin1Left, pin2Left, idle) = _pins.Snapshot();
        return new HomeCardStatus(state, pin1Left, pin2Left, KeyType, CertificateChain.Count > 0, CardId, idle, _options.TokenLabel);
    }

    /// <summary>PIN1: Locked → RemoteAccessWait (seed Fig. 6).</summary>
    public PinResult EnterPin1(string pin) => _pins.EnterPin1(pin);

    /// <summary>PIN2, over an established control channel: RemoteAccessWait → CryptoReady. An old card gets its purse key here.</summary>
    public PinResult EnterPin2(string pin) => _pins.EnterPin2(pin, EnsurePurseKey);

    /// <summary>The user's "done": CryptoReady → RemoteAccessWait.</summary>
    public void Done() => _pins.Done();

    /// <summary>Back to Locked (the home server stops, or the user locks the card entirely).</summary>
    public void Lock() => _pins.Lock();

    /// <summary>
    /// Picks up what owner commands in other processes changed: a card unblocked there is locked here with
    /// its new PINs, a card disabled there is disabled here, an imported certificate is used from now on,
    /// and an imported key ends readiness. Returns true when readiness (or the state) changed.
    /// </summary>
    public bool Refresh()
    {
        var changed = _pins.SyncWithFile();
        lock (_pins.Gate)
        {
            if (!_keys.Refresh()) return changed;
            _pins.Done();
            return true;
        }
    }

    /// <summary>Resets the idle clock (any use of the card does).</summary>
    public void Touch() => _pins.Touch();

    /// <summary>Unblocks a disabled card with the admin code (as a PUK does) and sets new PINs.</summary>
    public PinResult Unblock(string adminCode, string newPin1, string newPin2)
    {
        ValidatePin(newPin1, "PIN1");
        ValidatePin(newPin2, "PIN2");
        if (string.Equals(newPin1, newPin2, StringComparison.Ordinal)) throw new ArgumentException("PIN1 and PIN2 must differ", nameof(newPin2));
        return _provisioning.Unblock(adminCode, newPin1, newPin2);
    }

    /// <summary>A PKCS#10 request for the user's key, signed in the token with PIN2 (counted).</summary>
    public byte[] CreateCertificateSigningRequest(string subject, string pin2) => _provisioning.CreateCertificateSigningRequest(subject, pin2);

    /// <summary>Imports the certificate issued for the card's key (and its chain) into the token and the card directory.</summary>
    public void ImportCertificate(byte[] certificateDer, IReadOnlyList<byte[]> chainDer, string pin2) => _provisioning.ImportCertificate(certificateDer, chainDer, pin2);

    /// <summary>
    /// Moves an existing key and certificate (PKCS#12) into the token, replacing the generated TLS key:
    /// the key is written as sensitive and non-extractable, and its software copy is wiped. EC keys only.
    /// </summary>
    public void ImportPkcs12(byte[] pkcs12, string password, string pin2) => _provisioning.ImportPkcs12(pkcs12, password, pin2);

    /// <summary>The purse key as a COSE signer (money messages only); gated like every signature.</summary>
    public IMoneySigner OpenMoneySigner() => new HomeCardMoneySigner(this);

    /// <summary>The TLS identity key as an ECDsa (for verifying what the card signed in a handshake).</summary>
    public ECDsa PublicEcKey()
    {
        var ec = ECDsa.Create();
        ec.ImportSubjectPublicKeyInfo(_keys.Config.PublicKeyInfo, out _);
        return ec;
    }

    /// <summary>The purse key as an ECDsa (for verifying the card's money messages).</summary>
    public ECDsa PursePublicKey()
    {
        var ec = ECDsa.Create();
        ec.ImportSubjectPublicKeyInfo(_keys.Config.PurseKeyInfo ?? throw new CardNotReadyException("this card has no purse key yet: unlock it once (PIN1 and PIN2)"), out _);
        return ec;
    }

    /// <summary>The purse seal's counter kept in the token (null before the first seal); needs CryptoReady.</summary>
    public long? ReadPurseCounter() => _pins.WithReady(t => t.ReadPurseCounter());

    /// <summary>Moves the purse seal's counter in the token forward; needs CryptoReady.</summary>
    public void AdvancePurseCounter(long value) => _pins.WithReady(t =>
    {
        t.WritePurseCounter(value);
        return 0;
    });

    /// <summary>ECDSA with the TLS identity key over the hash of checked CertificateVerify content; r||s.</summary>
    internal byte[] SignTlsHash(byte[] hash) => Signed(_pins.SignReady((t, s) => t.SignTlsHash(s, hash)));

    internal byte[] SignTlsPss(byte[] hash, HashAlgorithmName hashAlgorithm) => Signed(_pins.SignReady((t, s) => t.SignTlsPss(s, hash, hashAlgorithm)));

    /// <summary>Runs a TLS signature once it has its turn at the token (see <see cref="_tlsTurns"/>), waiting asynchronously until then.</summary>
    internal async ValueTask<byte[]> SignTlsInTurnAsync(Func<byte[]> signature, CancellationToken cancellationToken)
    {
        // A card with no pool is not ready: the signature refuses at once, with the card's own reason.
        if (_token.Signing is not { } pool) return signature();
        var turns = LazyInitializer.EnsureInitialized(ref _tlsTurns, () => new SemaphoreSlim(pool.Size));
        await turns.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return signature();
        }
        finally
        {
            turns.Release();
        }
    }

    /// <summary>ES256 with the purse key over a COSE Sig_structure whose payload is a money message; refuses anything else.</summary>
    internal byte[] SignMoneyStructure(ReadOnlySpan<byte> toBeSigned)
    {
        if (!SignedContent.IsMoneySigStructure(toBeSigned)) throw new CryptographicException("the purse key signs money messages only");
        var hash = SHA256.HashData(toBeSigned);
        return Signed(_pins.SignReady((t, s) => t.SignPurseHash(s, hash)));
    }

    private byte[] Signed(byte[] signature)
    {
        Counters?.AddPublicKeyOperations(1);
        return signature;
    }

    /// <summary>Gives a card made before the purse key existed its purse key (runs in the new ready session).</summary>
    private void EnsurePurseKey()
    {
        if (_keys.Config.PurseKeyInfo is not null && _token.HasPurseKey()) return;
        var purse = _token.GeneratePurseKey();
        var config = _keys.Config with { PurseKeyInfo = purse };
        config.Save(_options);
        _keys.Config = config;
    }

    private static void ValidatePin(string pin, string name)
    {
        if (pin.Length is < 4 or > 64) throw new ArgumentException($"{name} must be 4 to 64 characters", name);
    }

    public void Dispose()
    {
        _pins.Close();
        _token.Dispose();
    }
}
