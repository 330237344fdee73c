using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Daiko.Cards.Tokens;
using Daiko.Tls;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards;

/// <summary>
/// The home card: the user's key and certificate in a PKCS#11 token, behind the state machine of
/// seed Fig. 6. PIN2 is the key token's user PIN (checked by the token, never stored); PIN1 is the
/// user PIN of a second token, as multi-PIN smart cards appear in PKCS#11; the admin code is both
/// tokens' SO PIN. Failure counters are Daiko's (SoftHSM2 never locks a PIN) and persisted.
/// </summary>
public sealed class HomeCard : IDisposable
{
    private static readonly byte[] KeyId = [0xDA, 0x1C, 0x00, 0x01];

    private readonly HomeCardOptions _options;
    private readonly Pkcs11Module _module;
    private readonly CardStateFile _stateFile;
    private CardConfig _config;
    private readonly object _gate = new();
    private ISession? _session;
    private IObjectHandle? _privateKey;
    private HomeCardState _state;
    private DateTimeOffset _lastUse;

    private HomeCard(HomeCardOptions options, Pkcs11Module module, CardConfig config)
    {
        _options = options;
        _module = module;
        _config = config;
        _stateFile = new CardStateFile(Path.Combine(options.CardDirectory, "state.json"));
        var persisted = _stateFile.Read();
        _state = persisted.Disabled ? HomeCardState.Disabled : HomeCardState.Locked;
        CertificateChain = LoadChain();
        TlsSigner = new HomeCardTlsSigner(this);
    }

    private sealed record CardConfig(HomeCardKeyType KeyType, string CardId, byte[] PublicKeyInfo);

    public HomeCardKeyType KeyType => _config.KeyType;

    /// <summary>A stable id: hex SHA-256 of the public key (SubjectPublicKeyInfo).</summary>
    public string CardId => _config.CardId;

    /// <summary>The user's certificate chain, leaf first (empty until imported).</summary>
    public IReadOnlyList<byte[]> CertificateChain { get; private set; }

    /// <summary>Signs CertificateVerify in the token; only while <see cref="HomeCardState.CryptoReady"/>.</summary>
    public ITlsSigner TlsSigner { get; }

    /// <summary>Counts signatures made (for cost reporting).</summary>
    public TlsCounters? Counters { get; set; }

    public HomeCardState State
    {
        get
        {
            lock (_gate)
            {
                ExpireIfIdle();
                return _state;
            }
        }
    }

    /// <summary>Creates the tokens and the user's key; returns the open card (Locked).</summary>
    public static HomeCard Initialize(HomeCardOptions options, HomeCardKeyType keyType, string pin1, string pin2, string adminCode)
    {
        ValidatePin(pin1, "PIN1");
        ValidatePin(pin2, "PIN2");
        if (adminCode.Length < 8) throw new ArgumentException("the admin code must be at least 8 characters", nameof(adminCode));
        if (string.Equals(pin1, pin2, StringComparison.Ordinal)) throw new ArgumentException("PIN1 and PIN2 must differ", nameof(pin2));
        Directory.CreateDirectory(options.CardDirectory);
        if (File.Exists(ConfigPath(options))) throw new InvalidOperationException($"a home card already exists in {options.Directory}");
        if (options.EmbeddedSoftHsm)
        {
            var tokens = Path.Combine(options.CardDirectory, "tokens");
            Directory.CreateDirectory(tokens);
            File.WriteAllText(options.SoftHsmConf!, $"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n");
        }
        var module = Pkcs11Module.Acquire(options.EffectiveModulePath, options.SoftHsmConf);
        try
        {
            CheckMechanisms(module, keyType);
            InitToken(module, options.TokenLabel, adminCode, pin2);
            InitToken(module, options.Pin1TokenLabel, adminCode, pin1);
            var slot = module.FindSlot(options.TokenLabel)!;
            byte[] spki;
            using (var session = slot.OpenSession(SessionType.ReadWrite))
            {
                session.Login(CKU.CKU_USER, pin2);
                spki = GenerateKey(module, session, keyType);
                session.Logout();
            }
            var config = new CardConfig(keyType, Convert.ToHexString(SHA256.HashData(spki)).ToLowerInvariant(), spki);
            File.WriteAllText(ConfigPath(options), JsonSerializer.Serialize(config));
            new CardStateFile(Path.Combine(options.CardDirectory, "state.json")).Write(new PersistedCardState());
            return new HomeCard(options, module, config);
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>Opens an existing card (Locked; a disabled card stays disabled).</summary>
    public static HomeCard Open(HomeCardOptions options)
    {
        var configPath = ConfigPath(options);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"no home card in {options.Directory}; run 'daiko home init' first");
        var config = JsonSerializer.Deserialize<CardConfig>(File.ReadAllText(configPath)) ?? throw new InvalidDataException("the card configuration is unreadable");
        var module = Pkcs11Module.Acquire(options.EffectiveModulePath, options.SoftHsmConf);
        if (module.FindSlot(options.TokenLabel) is null || module.FindSlot(options.Pin1TokenLabel) is null)
        {
            module.Dispose();
            throw new InvalidOperationException($"the home card's tokens ('{options.TokenLabel}') are not present in the PKCS#11 module");
        }
        return new HomeCard(options, module, config);
    }

    /// <summary>Reads the persisted status without opening the token (for <c>home card status</c> from another process).</summary>
    public static HomeCardStatus ReadStatus(HomeCardOptions options)
    {
        var configPath = ConfigPath(options);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"no home card in {options.Directory}; run 'daiko home init' first");
        var config = JsonSerializer.Deserialize<CardConfig>(File.ReadAllText(configPath))!;
        var persisted = new CardStateFile(Path.Combine(options.CardDirectory, "state.json")).Read();
        var state = persisted.Disabled ? HomeCardState.Disabled : persisted.State;
        if (state == HomeCardState.CryptoReady && persisted.IdleExpiresAt <= options.Time.GetUtcNow()) state = HomeCardState.RemoteAccessWait;
        return new HomeCardStatus(state, Math.Max(0, HomeCardOptions.MaxTries - persisted.Pin1Failures), Math.Max(0, HomeCardOptions.MaxTries - persisted.Pin2Failures),
            config.KeyType, File.Exists(Path.Combine(options.CardDirectory, "user.pem")), config.CardId,
            state == HomeCardState.CryptoReady ? persisted.IdleExpiresAt : null, options.TokenLabel);
    }

    public HomeCardStatus GetStatus()
    {
        lock (_gate)
        {
            ExpireIfIdle();
            var p = _stateFile.Read();
            return new HomeCardStatus(_state, Math.Max(0, HomeCardOptions.MaxTries - p.Pin1Failures), Math.Max(0, HomeCardOptions.MaxTries - p.Pin2Failures),
                KeyType, CertificateChain.Count > 0, CardId, _state == HomeCardState.CryptoReady ? _lastUse + _options.IdleTimeout : null, _options.TokenLabel);
        }
    }

    /// <summary>PIN1: Locked → RemoteAccessWait (seed Fig. 6).</summary>
    public PinResult EnterPin1(string pin)
    {
        lock (_gate)
        {
            ExpireIfIdle();
            if (_state == HomeCardState.Disabled) return Disabled();
            // Past Locked already (another terminal gave PIN1): the PIN is still checked and counted.
            var wasLocked = _state == HomeCardState.Locked;
            var result = TryPin(isPin1: true, pin);
            if (result.Accepted && wasLocked) SetState(HomeCardState.RemoteAccessWait);
            return result with { State = _state };
        }
    }

    /// <summary>PIN2, over an established control channel: RemoteAccessWait → CryptoReady.</summary>
    public PinResult EnterPin2(string pin)
    {
        lock (_gate)
        {
            ExpireIfIdle();
            if (_state == HomeCardState.Disabled) return Disabled();
            if (_state == HomeCardState.Locked) return new PinResult(PinOutcome.WrongState, -1, _state, "give PIN1 first: the card is locked");
            var result = TryPin(isPin1: false, pin);
            if (result.Accepted)
            {
                _lastUse = _options.Time.GetUtcNow();
                SetState(HomeCardState.CryptoReady);
            }
            return result with { State = _state };
        }
    }

    /// <summary>The user's "done": CryptoReady → RemoteAccessWait.</summary>
    public void Done()
    {
        lock (_gate)
        {
            if (_state == HomeCardState.CryptoReady) DropToRemoteAccessWait();
        }
    }

    /// <summary>Back to Locked (the home server stops, or the user locks the card entirely).</summary>
    public void Lock()
    {
        lock (_gate)
        {
            if (_state == HomeCardState.Disabled) return;
            LogoutSession();
            SetState(HomeCardState.Locked);
        }
    }

    /// <summary>Resets the idle clock (any use of the card does).</summary>
    public void Touch()
    {
        lock (_gate)
        {
            ExpireIfIdle();
            if (_state == HomeCardState.CryptoReady)
            {
                _lastUse = _options.Time.GetUtcNow();
                PersistState();
            }
        }
    }

    /// <summary>Unblocks a disabled card with the admin code (as a PUK does) and sets new PINs.</summary>
    public PinResult Unblock(string adminCode, string newPin1, string newPin2)
    {
        ValidatePin(newPin1, "PIN1");
        ValidatePin(newPin2, "PIN2");
        if (string.Equals(newPin1, newPin2, StringComparison.Ordinal)) throw new ArgumentException("PIN1 and PIN2 must differ", nameof(newPin2));
        lock (_gate)
        {
            try
            {
                SetUserPin(_options.TokenLabel, adminCode, newPin2);
                SetUserPin(_options.Pin1TokenLabel, adminCode, newPin1);
            }
            catch (Pkcs11Exception e) when (e.RV == CKR.CKR_PIN_INCORRECT)
            {
                return new PinResult(PinOutcome.Wrong, -1, _state, "wrong admin code: the card stays as it was");
            }
            _stateFile.Locked(() =>
            {
                _stateFile.Write(new PersistedCardState());
                return 0;
            });
            LogoutSession();
            _state = HomeCardState.Locked;
            return new PinResult(PinOutcome.Accepted, HomeCardOptions.MaxTries, _state, "card unblocked with new PINs; it is locked until PIN1 is given");
        }
    }

    /// <summary>A PKCS#10 request for the user's key, signed in the token (needs CryptoReady for the signature).</summary>
    public byte[] CreateCertificateSigningRequest(string subject, string pin2)
    {
        lock (_gate)
        {
            using var session = _module.FindSlot(_options.TokenLabel)!.OpenSession(SessionType.ReadWrite);
            var loggedIn = LoginUserCounted(session, pin2);
            try
            {
                var generator = CreateSignatureGenerator(session);
                var request = KeyType == HomeCardKeyType.Rsa3072
                    ? new CertificateRequest(new X500DistinguishedName(subject), PublicKeyFromSpki(), HashAlgorithmName.SHA256, RSASignaturePadding.Pss)
                    : new CertificateRequest(new X500DistinguishedName(subject), PublicKeyFromSpki(), KeyType == HomeCardKeyType.P384 ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA256);
                request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
                request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.2") }, false));
                return request.CreateSigningRequest(generator);
            }
            finally
            {
                if (loggedIn) session.Logout();
            }
        }
    }

    /// <summary>Imports the certificate issued for the card's key (and its chain) into the token and the card directory.</summary>
    public void ImportCertificate(byte[] certificateDer, IReadOnlyList<byte[]> chainDer, string pin2)
    {
        using var certificate = X509CertificateLoader.LoadCertificate(certificateDer);
        if (!certificate.PublicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(_config.PublicKeyInfo))
        {
            throw new InvalidOperationException("the certificate is not for this card's key");
        }
        lock (_gate)
        {
            using var session = _module.FindSlot(_options.TokenLabel)!.OpenSession(SessionType.ReadWrite);
            var loggedIn = LoginUserCounted(session, pin2);
            var f = _module.Factories.ObjectAttributeFactory;
            session.CreateObject(
            [
                f.Create(CKA.CKA_CLASS, CKO.CKO_CERTIFICATE),
                f.Create(CKA.CKA_CERTIFICATE_TYPE, CKC.CKC_X_509),
                f.Create(CKA.CKA_TOKEN, true),
                f.Create(CKA.CKA_ID, KeyId),
                f.Create(CKA.CKA_LABEL, "daiko user certificate"),
                f.Create(CKA.CKA_SUBJECT, certificate.SubjectName.RawData),
                f.Create(CKA.CKA_VALUE, certificateDer),
            ]);
            if (loggedIn) session.Logout();
            var pem = string.Concat(new[] { certificateDer }.Concat(chainDer).Select(d => PemEncoding.WriteString("CERTIFICATE", d) + "\n"));
            File.WriteAllText(Path.Combine(_options.CardDirectory, "user.pem"), pem);
            CertificateChain = LoadChain();
        }
    }

    /// <summary>
    /// Moves an existing key and certificate (PKCS#12) into the token, replacing the generated key: the
    /// key is written as sensitive and non-extractable, and its software copy is wiped. EC keys only.
    /// </summary>
    public void ImportPkcs12(byte[] pkcs12, string password, string pin2)
    {
        using var certificate = X509CertificateLoader.LoadPkcs12(pkcs12, password, X509KeyStorageFlags.Exportable | X509KeyStorageFlags.EphemeralKeySet);
        using var key = certificate.GetECDsaPrivateKey()
            ?? throw new NotSupportedException("only EC (P-256, P-384) keys can be imported into the home card; RSA keys must be generated on the token");
        var parameters = key.ExportParameters(includePrivateParameters: true);
        try
        {
            var keyType = parameters.D!.Length switch
            {
                32 => HomeCardKeyType.P256,
                48 => HomeCardKeyType.P384,
                _ => throw new NotSupportedException("only P-256 and P-384 keys can be imported"),
            };
            lock (_gate)
            {
                using var session = _module.FindSlot(_options.TokenLabel)!.OpenSession(SessionType.ReadWrite);
                var loggedIn = LoginUserCounted(session, pin2);
                try
                {
                    var f = _module.Factories.ObjectAttributeFactory;
                    foreach (var old in session.FindAllObjects([f.Create(CKA.CKA_ID, KeyId)])) session.DestroyObject(old);
                    var writer = new AsnWriter(AsnEncodingRules.DER);
                    writer.WriteObjectIdentifier(keyType == HomeCardKeyType.P384 ? "1.3.132.0.34" : "1.2.840.10045.3.1.7");
                    session.CreateObject(
                    [
                        f.Create(CKA.CKA_CLASS, CKO.CKO_PRIVATE_KEY),
                        f.Create(CKA.CKA_KEY_TYPE, CKK.CKK_EC),
                        f.Create(CKA.CKA_TOKEN, true),
                        f.Create(CKA.CKA_PRIVATE, true),
                        f.Create(CKA.CKA_SENSITIVE, true),
                        f.Create(CKA.CKA_EXTRACTABLE, false),
                        f.Create(CKA.CKA_SIGN, true),
                        f.Create(CKA.CKA_ID, KeyId),
                        f.Create(CKA.CKA_LABEL, "daiko user key"),
                        f.Create(CKA.CKA_EC_PARAMS, writer.Encode()),
                        f.Create(CKA.CKA_VALUE, parameters.D),
                    ]);
                }
                finally
                {
                    if (loggedIn) session.Logout();
                }
                _privateKey = null;
                LogoutSession();
                var spki = certificate.PublicKey.ExportSubjectPublicKeyInfo();
                var config = new CardConfig(keyType, Convert.ToHexString(SHA256.HashData(spki)).ToLowerInvariant(), spki);
                File.WriteAllText(ConfigPath(_options), JsonSerializer.Serialize(config));
                _config = config;
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(parameters.D);
        }
        ImportCertificate(certificate.RawData, [], pin2);
    }

    /// <summary>An ECDsa whose private operations run in the token (for COSE_Sign1); gated like every signature.</summary>
    public ECDsa OpenCoseSigningKey()
    {
        if (KeyType == HomeCardKeyType.Rsa3072) throw new NotSupportedException("COSE signing of e-money messages needs an EC home card key (p256 or p384)");
        return new TokenECDsa(this, PublicEcParameters());
    }

    /// <summary>The card's public key as an ECDsa (for verifying what the card signed).</summary>
    public ECDsa PublicEcKey()
    {
        var ec = ECDsa.Create();
        ec.ImportSubjectPublicKeyInfo(_config.PublicKeyInfo, out _);
        return ec;
    }

    public byte[] PublicKeyInfo => _config.PublicKeyInfo.ToArray();

    /// <summary>Signs a hash with the card's EC key; returns r||s (IEEE P1363).</summary>
    internal byte[] SignHashOnToken(ReadOnlySpan<byte> hash)
    {
        lock (_gate)
        {
            var session = ReadySession();
            var mechanism = _module.Factories.MechanismFactory.Create(CKM.CKM_ECDSA);
            var signature = session.Sign(mechanism, _privateKey ??= FindPrivateKey(session), hash.ToArray());
            _lastUse = _options.Time.GetUtcNow();
            Counters?.AddPublicKeyOperations(1);
            return signature;
        }
    }

    /// <summary>RSA-PSS signature over a hash in the token.</summary>
    internal byte[] SignPssOnToken(ReadOnlySpan<byte> hash, HashAlgorithmName hashAlgorithm)
    {
        lock (_gate)
        {
            var session = ReadySession();
            var (ckm, mgf, length) = hashAlgorithm.Name switch
            {
                "SHA384" => (CKM.CKM_SHA384, CKG.CKG_MGF1_SHA384, 48),
                "SHA512" => (CKM.CKM_SHA512, CKG.CKG_MGF1_SHA512, 64),
                _ => (CKM.CKM_SHA256, CKG.CKG_MGF1_SHA256, 32),
            };
            var parameters = _module.Factories.MechanismParamsFactory.CreateCkRsaPkcsPssParams(ConvertUtils.UInt64FromCKM(ckm), ConvertUtils.UInt64FromCKG(mgf), (ulong)length);
            var mechanism = _module.Factories.MechanismFactory.Create(CKM.CKM_RSA_PKCS_PSS, parameters);
            var signature = session.Sign(mechanism, _privateKey ??= FindPrivateKey(session), hash.ToArray());
            _lastUse = _options.Time.GetUtcNow();
            Counters?.AddPublicKeyOperations(1);
            return signature;
        }
    }

    /// <summary>For benchmarks: a raw C_Sign with CKM_ECDSA on the card's key, bypassing the card's state machine.</summary>
    internal Func<byte[], byte[]> RawTokenSigner(string pin2)
    {
        var session = _module.FindSlot(_options.TokenLabel)!.OpenSession(SessionType.ReadOnly);
        LoginUser(session, pin2);
        var key = FindPrivateKey(session);
        var mechanism = _module.Factories.MechanismFactory.Create(CKM.CKM_ECDSA);
        return hash => session.Sign(mechanism, key, hash);
    }

    /// <summary>Reads CKA_VALUE of the private key (must fail: the key is sensitive and not extractable).</summary>
    internal (bool Sensitive, bool Extractable, bool ValueReadable) InspectPrivateKey(string pin2)
    {
        using var session = _module.FindSlot(_options.TokenLabel)!.OpenSession(SessionType.ReadOnly);
        var loggedIn = LoginUserCounted(session, pin2);
        try
        {
            var key = FindPrivateKey(session);
            var attributes = session.GetAttributeValue(key, [CKA.CKA_SENSITIVE, CKA.CKA_EXTRACTABLE]);
            bool readable;
            try
            {
                var value = session.GetAttributeValue(key, [KeyType == HomeCardKeyType.Rsa3072 ? CKA.CKA_PRIVATE_EXPONENT : CKA.CKA_VALUE]);
                readable = !value[0].CannotBeRead && value[0].GetValueAsByteArray() is { Length: > 0 };
            }
            catch (Pkcs11Exception)
            {
                readable = false;
            }
            return (attributes[0].GetValueAsBool(), attributes[1].GetValueAsBool(), readable);
        }
        finally
        {
            if (loggedIn) session.Logout();
        }
    }

    /// <summary>
    /// Logs the user in on <paramref name="session"/> unless the card's ready session already did (a
    /// PKCS#11 login is per token, shared by all sessions). Returns whether the caller must log out.
    /// </summary>
    private static bool LoginUser(ISession session, string pin)
    {
        try
        {
            session.Login(CKU.CKU_USER, pin);
            return true;
        }
        catch (Pkcs11Exception e) when (e.RV == CKR.CKR_USER_ALREADY_LOGGED_IN)
        {
            return false;
        }
    }

    private ISession ReadySession()
    {
        ExpireIfIdle();
        if (_state != HomeCardState.CryptoReady || _session is null)
        {
            throw _state == HomeCardState.Disabled
                ? new CardDisabledException("the home card is disabled after 3 wrong PINs; unblock it with the admin code")
                : new CardNotReadyException(_state == HomeCardState.Locked
                    ? "the home card is locked: give PIN1 and then PIN2 from a terminal"
                    : "the home card is waiting for PIN2 from a terminal");
        }
        return _session;
    }

    private PinResult TryPin(bool isPin1, string pin)
    {
        var label = isPin1 ? _options.Pin1TokenLabel : _options.TokenLabel;
        var session = _module.FindSlot(label)!.OpenSession(isPin1 ? SessionType.ReadOnly : SessionType.ReadWrite);
        var (correct, after) = CountedLogin(isPin1, session, pin);
        var name = isPin1 ? "PIN1" : "PIN2";
        if (after is null)
        {
            session.Dispose();
            return Disabled();
        }
        if (correct)
        {
            if (isPin1)
            {
                session.Logout();
                session.Dispose();
            }
            else if (_session is not null)
            {
                // Ready already: the new session replaces the old without logging the token out
                // (a PKCS#11 login is per token; the new session holds it now).
                _privateKey = null;
                _session.Dispose();
                _session = session;
            }
            else
            {
                _session = session;
            }
            return new PinResult(PinOutcome.Accepted, HomeCardOptions.MaxTries, _state, $"{name} accepted");
        }
        session.Dispose();
        if (after.Disabled)
        {
            LogoutSession();
            _state = HomeCardState.Disabled;
            return new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, $"wrong {name}: the card is now disabled after {HomeCardOptions.MaxTries} wrong entries; unblock it with the admin code");
        }
        var left = HomeCardOptions.MaxTries - (isPin1 ? after.Pin1Failures : after.Pin2Failures);
        return new PinResult(PinOutcome.Wrong, left, _state, $"wrong {name}: {left} {(left == 1 ? "try" : "tries")} left");
    }

    /// <summary>
    /// C_Login on <paramref name="session"/>, counted against the PIN's three tries. The whole attempt
    /// runs under the card's exclusive lock, so attempts from every thread and process are checked one
    /// at a time (SoftHSM2 rewrites the token file on each login, so concurrent logins also corrupt
    /// each other's reads). The attempt is counted durably before the token sees the PIN: a crash in
    /// between costs a try and never gives one. A token already logged in (by another session of this
    /// process) is logged out and in again, so the PIN is always checked. A token error that gives no
    /// verdict on the PIN is not counted. Returns null state when the card is disabled.
    /// </summary>
    private (bool Correct, PersistedCardState? After) CountedLogin(bool isPin1, ISession session, string pin)
    {
        var result = CountedLoginLocked(isPin1, session, pin);
        if (!isPin1 && !result.Correct && _state == HomeCardState.CryptoReady)
        {
            // Checking a wrong PIN2 logged the token out, and the ready session's login with it:
            // readiness ends here — fail closed.
            DropToRemoteAccessWait();
        }
        return result;
    }

    private (bool Correct, PersistedCardState? After) CountedLoginLocked(bool isPin1, ISession session, string pin) => _stateFile.Locked(() =>
    {
        var p = _stateFile.Read();
        var failures = isPin1 ? p.Pin1Failures : p.Pin2Failures;
        if (!p.Disabled && failures >= HomeCardOptions.MaxTries)
        {
            // Three tries were counted and the last never finished (a crash): that was the third strike.
            p = p with { Disabled = true, State = HomeCardState.Disabled };
            _stateFile.Write(p);
        }
        if (p.Disabled) return (false, (PersistedCardState?)null);
        var counted = isPin1 ? p with { Pin1Failures = failures + 1 } : p with { Pin2Failures = failures + 1 };
        _stateFile.Write(counted);
        bool correct;
        try
        {
            Pkcs11Module.LoginChecked(session, pin);
            correct = true;
        }
        catch (Pkcs11Exception e) when (e.RV is CKR.CKR_PIN_INCORRECT or CKR.CKR_PIN_LEN_RANGE or CKR.CKR_PIN_INVALID or CKR.CKR_PIN_LOCKED)
        {
            correct = false;
        }
        catch (Pkcs11Exception)
        {
            _stateFile.Write(p);
            throw;
        }
        PersistedCardState after;
        if (correct)
        {
            after = isPin1 ? counted with { Pin1Failures = 0 } : counted with { Pin2Failures = 0 };
        }
        else
        {
            after = failures + 1 >= HomeCardOptions.MaxTries ? counted with { Disabled = true, State = HomeCardState.Disabled } : counted;
        }
        _stateFile.Write(after);
        return (correct, (PersistedCardState?)after);
    });

    /// <summary>
    /// Logs in with PIN2 for an owner operation (CSR, certificate or key import), under the same three
    /// tries as PIN2 over the control channel: a wrong PIN2 here is a strike too. Returns whether the
    /// caller must log out (false when the card's ready session holds the login).
    /// </summary>
    private bool LoginUserCounted(ISession session, string pin2)
    {
        var (correct, after) = CountedLogin(isPin1: false, session, pin2);
        if (after is null) throw new CardDisabledException("the card is disabled after 3 wrong PINs; unblock it with the admin code");
        if (!correct)
        {
            if (after.Disabled)
            {
                LogoutSession();
                _state = HomeCardState.Disabled;
                throw new CardDisabledException($"wrong PIN2: the card is now disabled after {HomeCardOptions.MaxTries} wrong entries; unblock it with the admin code");
            }
            var left = HomeCardOptions.MaxTries - after.Pin2Failures;
            throw new WrongPinException($"wrong PIN2: {left} {(left == 1 ? "try" : "tries")} left", left);
        }
        return _session is null;
    }

    private PinResult Disabled()
    {
        _state = HomeCardState.Disabled;
        return new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, "the card is disabled after 3 wrong PINs; unblock it with the admin code");
    }

    private void ExpireIfIdle()
    {
        if (_state == HomeCardState.CryptoReady && _options.Time.GetUtcNow() - _lastUse >= _options.IdleTimeout)
        {
            DropToRemoteAccessWait();
        }
    }

    private void DropToRemoteAccessWait()
    {
        LogoutSession();
        SetState(HomeCardState.RemoteAccessWait);
    }

    private void SetState(HomeCardState state)
    {
        _state = state;
        PersistState();
    }

    private void PersistState()
    {
        var state = _state;
        var idle = state == HomeCardState.CryptoReady ? _lastUse + _options.IdleTimeout : (DateTimeOffset?)null;
        _stateFile.Locked(() =>
        {
            var p = _stateFile.Read();
            _stateFile.Write(p with { State = p.Disabled ? HomeCardState.Disabled : state, IdleExpiresAt = idle });
            return 0;
        });
    }

    private void LogoutSession()
    {
        _privateKey = null;
        if (_session is null) return;
        try { _session.Logout(); } catch (Pkcs11Exception) { }
        _session.Dispose();
        _session = null;
    }

    private IObjectHandle FindPrivateKey(ISession session)
    {
        var f = _module.Factories.ObjectAttributeFactory;
        var found = session.FindAllObjects([f.Create(CKA.CKA_CLASS, CKO.CKO_PRIVATE_KEY), f.Create(CKA.CKA_ID, KeyId)]);
        return found.Count == 1 ? found[0] : throw new InvalidOperationException("the user's key is missing from the home card token");
    }

    private void SetUserPin(string label, string adminCode, string newPin)
    {
        using var session = _module.FindSlot(label)!.OpenSession(SessionType.ReadWrite);
        session.Login(CKU.CKU_SO, adminCode);
        try
        {
            session.InitPin(newPin);
        }
        finally
        {
            session.Logout();
        }
    }

    private X509SignatureGenerator CreateSignatureGenerator(ISession session)
    {
        if (KeyType == HomeCardKeyType.Rsa3072)
        {
            using var rsa = RSA.Create();
            rsa.ImportSubjectPublicKeyInfo(_config.PublicKeyInfo, out _);
            return new TokenRsaSignatureGenerator(this, session, _module, rsa.ExportParameters(false), FindPrivateKey(session));
        }
        return X509SignatureGenerator.CreateForECDsa(new SessionECDsa(session, _module, FindPrivateKey(session), PublicEcParameters()));
    }

    private ECParameters PublicEcParameters()
    {
        using var ec = PublicEcKey();
        return ec.ExportParameters(false);
    }

    private PublicKey PublicKeyFromSpki() => PublicKey.CreateFromSubjectPublicKeyInfo(_config.PublicKeyInfo, out _);

    private List<byte[]> LoadChain()
    {
        var path = Path.Combine(_options.CardDirectory, "user.pem");
        if (!File.Exists(path)) return [];
        var collection = new X509Certificate2Collection();
        collection.ImportFromPemFile(path);
        return collection.Select(c => c.RawData).ToList();
    }

    private static string ConfigPath(HomeCardOptions options) => Path.Combine(options.CardDirectory, "card.json");

    private static void ValidatePin(string pin, string name)
    {
        if (pin.Length is < 4 or > 64) throw new ArgumentException($"{name} must be 4 to 64 characters", name);
    }

    private static void InitToken(Pkcs11Module module, string label, string soPin, string userPin)
    {
        var slot = module.FindSlot(label, expectPresent: false) is null ? module.FreeSlot() : throw new InvalidOperationException($"a token labelled '{label}' already exists");
        slot.InitToken(soPin, label);
        var initialized = module.FindSlot(label)!;
        using var session = initialized.OpenSession(SessionType.ReadWrite);
        session.Login(CKU.CKU_SO, soPin);
        session.InitPin(userPin);
        session.Logout();
    }

    private static void CheckMechanisms(Pkcs11Module module, HomeCardKeyType keyType)
    {
        var slot = module.FreeSlot();
        var mechanisms = slot.GetMechanismList();
        var needed = keyType == HomeCardKeyType.Rsa3072
            ? new[] { CKM.CKM_RSA_PKCS_KEY_PAIR_GEN, CKM.CKM_RSA_PKCS_PSS }
            : new[] { CKM.CKM_EC_KEY_PAIR_GEN, CKM.CKM_ECDSA };
        var missing = needed.Where(m => !mechanisms.Contains(m)).ToList();
        if (missing.Count > 0)
        {
            throw new NotSupportedException(keyType == HomeCardKeyType.Rsa3072 && missing.Contains(CKM.CKM_RSA_PKCS_PSS)
                ? "this token cannot sign RSA-PSS, which TLS 1.3 requires for RSA keys: choose --key-type p256 or p384"
                : $"this token lacks {string.Join(", ", missing)}, which the home card needs");
        }
    }

    private static byte[] GenerateKey(Pkcs11Module module, ISession session, HomeCardKeyType keyType) =>
        GenerateKey(module, session, keyType, KeyId, "daiko user key");

    /// <summary>Generates a key pair in the token (sensitive, non-extractable); returns its SubjectPublicKeyInfo.</summary>
    internal static byte[] GenerateKey(Pkcs11Module module, ISession session, HomeCardKeyType keyType, byte[] id, string label)
    {
        var f = module.Factories.ObjectAttributeFactory;
        var privateAttributes = new List<IObjectAttribute>
        {
            f.Create(CKA.CKA_TOKEN, true),
            f.Create(CKA.CKA_PRIVATE, true),
            f.Create(CKA.CKA_SENSITIVE, true),
            f.Create(CKA.CKA_EXTRACTABLE, false),
            f.Create(CKA.CKA_SIGN, true),
            f.Create(CKA.CKA_ID, id),
            f.Create(CKA.CKA_LABEL, label),
        };
        var publicAttributes = new List<IObjectAttribute>
        {
            f.Create(CKA.CKA_TOKEN, true),
            f.Create(CKA.CKA_VERIFY, true),
            f.Create(CKA.CKA_ID, id),
            f.Create(CKA.CKA_LABEL, label),
        };
        if (keyType == HomeCardKeyType.Rsa3072)
        {
            publicAttributes.Add(f.Create(CKA.CKA_MODULUS_BITS, 3072UL));
            publicAttributes.Add(f.Create(CKA.CKA_PUBLIC_EXPONENT, new byte[] { 1, 0, 1 }));
            session.GenerateKeyPair(module.Factories.MechanismFactory.Create(CKM.CKM_RSA_PKCS_KEY_PAIR_GEN), publicAttributes, privateAttributes, out var pub, out _);
            var values = session.GetAttributeValue(pub, [CKA.CKA_MODULUS, CKA.CKA_PUBLIC_EXPONENT]);
            using var rsa = RSA.Create(new RSAParameters { Modulus = values[0].GetValueAsByteArray(), Exponent = values[1].GetValueAsByteArray() });
            return rsa.ExportSubjectPublicKeyInfo();
        }
        var oid = keyType == HomeCardKeyType.P384 ? "1.3.132.0.34" : "1.2.840.10045.3.1.7";
        var writer = new AsnWriter(AsnEncodingRules.DER);
        writer.WriteObjectIdentifier(oid);
        publicAttributes.Add(f.Create(CKA.CKA_EC_PARAMS, writer.Encode()));
        session.GenerateKeyPair(module.Factories.MechanismFactory.Create(CKM.CKM_EC_KEY_PAIR_GEN), publicAttributes, privateAttributes, out var publicKey, out _);
        var point = session.GetAttributeValue(publicKey, [CKA.CKA_EC_POINT])[0].GetValueAsByteArray();
        var raw = new AsnReader(point, AsnEncodingRules.DER).ReadOctetString();
        var size = keyType == HomeCardKeyType.P384 ? 48 : 32;
        using var ec = ECDsa.Create(new ECParameters
        {
            Curve = keyType == HomeCardKeyType.P384 ? ECCurve.NamedCurves.nistP384 : ECCurve.NamedCurves.nistP256,
            Q = new ECPoint { X = raw.AsSpan(1, size).ToArray(), Y = raw.AsSpan(1 + size, size).ToArray() },
        });
        return ec.ExportSubjectPublicKeyInfo();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            LogoutSession();
            if (_state is HomeCardState.CryptoReady or HomeCardState.RemoteAccessWait)
            {
                _state = HomeCardState.Locked;
                PersistState();
            }
        }
        _module.Dispose();
    }
}
