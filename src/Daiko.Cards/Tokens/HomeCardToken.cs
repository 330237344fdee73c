using System.Security.Cryptography;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Tokens;

/// <summary>
/// The home card's tokens and the signatures made in them: the ready session (opened by PIN2), the TLS
/// identity key, the purse key and the purse counter. Callers hold the card's lock; nothing here knows
/// the PIN state machine beyond "is there a ready session". Signatures run on <see cref="Signing"/>,
/// sessions that share the ready session's login, so that several run at once.
/// </summary>
internal sealed class HomeCardToken(HomeCardOptions options, Pkcs11Module module) : IDisposable
{
    private ISession? _ready;
    private SigningSessions? _signing;
    private IObjectHandle? _tlsKey;
    private IObjectHandle? _purseKey;

    public Pkcs11Module Module => module;

    public bool IsReady => _ready is not null;

    /// <summary>The signing sessions of the ready session's login (null when not ready).</summary>
    public SigningSessions? Signing => _signing;

    /// <summary>A new session on the PIN2 (key) token or the PIN1 token.</summary>
    public ISession OpenSession(bool pin1Token, bool readWrite) =>
        module.FindSlot(pin1Token ? options.Pin1TokenLabel : options.TokenLabel)!.OpenSession(readWrite ? SessionType.ReadWrite : SessionType.ReadOnly);

    /// <summary>
    /// Keeps <paramref name="session"/> (logged in with PIN2) as the ready session; a previous one is
    /// closed without logging the token out (a PKCS#11 login is per token; the new session holds it now).
    /// </summary>
    public void BecomeReady(ISession session)
    {
        _signing?.Dispose();
        _tlsKey = null;
        _purseKey = null;
        _ready?.Dispose();
        _ready = session;
        var slot = module.FindSlot(options.TokenLabel)!;
        _signing = new SigningSessions(slot, SigningSessions.SizeFor(slot)) { Leased = SignatureLeased };
    }

    /// <summary>Runs in each signature once it holds its session (tests use it to see signatures overlap).</summary>
    internal Action? SignatureLeased { get; set; }

    /// <summary>Logs the ready session out and closes it.</summary>
    public void Close()
    {
        // Signatures in flight finish first: none runs once the login is gone.
        _signing?.Dispose();
        _signing = null;
        _tlsKey = null;
        _purseKey = null;
        if (_ready is null) return;
        try { _ready.Logout(); } catch (Pkcs11Exception) { }
        _ready.Dispose();
        _ready = null;
    }

    private ISession Ready => _ready ?? throw new CardNotReadyException("the home card is not crypto-ready");

    /// <summary>ECDSA over a hash with the TLS identity key, in <paramref name="session"/> (one of <see cref="Signing"/>'s); r||s.</summary>
    public byte[] SignTlsHash(ISession session, byte[] hash) =>
        session.Sign(module.Factories.MechanismFactory.Create(CKM.CKM_ECDSA), _tlsKey ??= RequireKey(session, KeyTemplates.TlsKeyId), hash);

    /// <summary>RSA-PSS over a hash with the TLS identity key, in <paramref name="session"/>.</summary>
    public byte[] SignTlsPss(ISession session, byte[] hash, HashAlgorithmName hashAlgorithm)
    {
        var (ckm, mgf, length) = hashAlgorithm.Name switch
        {
            "SHA384" => (CKM.CKM_SHA384, CKG.CKG_MGF1_SHA384, 48),
            "SHA512" => (CKM.CKM_SHA512, CKG.CKG_MGF1_SHA512, 64),
            _ => (CKM.CKM_SHA256, CKG.CKG_MGF1_SHA256, 32),
        };
        var parameters = module.Factories.MechanismParamsFactory.CreateCkRsaPkcsPssParams(ConvertUtils.UInt64FromCKM(ckm), ConvertUtils.UInt64FromCKG(mgf), (ulong)length);
        return session.Sign(module.Factories.MechanismFactory.Create(CKM.CKM_RSA_PKCS_PSS, parameters), _tlsKey ??= RequireKey(session, KeyTemplates.TlsKeyId), hash);
    }

    /// <summary>ECDSA P-256 over a hash with the purse key, in <paramref name="session"/>; r||s.</summary>
    public byte[] SignPurseHash(ISession session, byte[] hash) =>
        session.Sign(module.Factories.MechanismFactory.Create(CKM.CKM_ECDSA), _purseKey ??= RequireKey(session, KeyTemplates.PurseKeyId), hash);

    /// <summary>Whether the token holds a purse key (read in the ready session).</summary>
    public bool HasPurseKey() => KeyTemplates.FindPrivateKey(module, Ready, KeyTemplates.PurseKeyId) is not null;

    /// <summary>Generates the purse key (P-256) in the ready session, replacing any half-made one; returns its SubjectPublicKeyInfo.</summary>
    public byte[] GeneratePurseKey() => GeneratePurseKey(module, Ready);

    public static byte[] GeneratePurseKey(Pkcs11Module module, ISession session)
    {
        var f = module.Factories.ObjectAttributeFactory;
        foreach (var old in session.FindAllObjects([f.Create(CKA.CKA_ID, KeyTemplates.PurseKeyId)])) session.DestroyObject(old);
        return KeyTemplates.GenerateKeyPair(module, session, HomeCardKeyType.P256, KeyTemplates.PurseKeyId, KeyTemplates.PurseKeyLabel);
    }

    /// <summary>The purse seal's counter kept in the token (a private data object); null before the first seal.</summary>
    public long? ReadPurseCounter() => TokenCounter.Read(module, Ready, KeyTemplates.PurseCounterLabel);

    /// <summary>Stores the purse counter in the token; it only ever moves forward, a lower value changes nothing (<see cref="TokenCounter"/>).</summary>
    public void WritePurseCounter(long value) => TokenCounter.Advance(module, Ready, KeyTemplates.PurseCounterLabel, value);

    public IObjectHandle RequireKey(ISession session, byte[] id) =>
        KeyTemplates.FindPrivateKey(module, session, id)
        ?? throw new InvalidOperationException(id.AsSpan().SequenceEqual(KeyTemplates.PurseKeyId)
            ? "the purse key is missing from the home card token"
            : "the user's key is missing from the home card token");

    /// <summary>Sets a token's user PIN with the admin code (the SO PIN), as a PUK does.</summary>
    public void SetUserPin(bool pin1Token, string adminCode, string newPin)
    {
        using var session = OpenSession(pin1Token, readWrite: true);
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

    public void Dispose()
    {
        Close();
        module.Dispose();
    }
}
