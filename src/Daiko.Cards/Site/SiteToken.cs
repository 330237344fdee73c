using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Daiko.Cards.Tokens;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Site;

/// <summary>Where a hosted site's token is: the PKCS#11 module, SoftHSM2's configuration (embedded) and the token's label.</summary>
public sealed record SiteTokenOptions(string ModulePath, string? SoftHsmConf, string TokenLabel)
{
    /// <summary>Debian's SoftHSM2 module (the embedded default).</summary>
    public const string SoftHsmModule = Pkcs11Module.DefaultSoftHsmPath;
}

/// <summary>Which of an owner's keys.</summary>
public enum OwnerKey
{
    Tls,
    Purse,
}

/// <summary>
/// A hosted site's one PKCS#11 token, logged in once with the site's own credential. Every owner's
/// keys are objects in it, labelled and identified by the owner (<c>daiko:OWNER:tls</c>,
/// <c>daiko:OWNER:purse</c>): sensitive, never extractable, signing only. A generic secret key (the
/// site PIN key, equally non-extractable) makes PIN verifiers: HMAC-SHA256 over the owner, the PIN's
/// purpose and the PIN, so a stolen database holds nothing that can be checked without the token.
/// Sessions are pooled: each operation takes one, so nodes sign for many owners at once, at most
/// <see cref="Size"/> at a time (the token's session limit less the login's, and no more than the cores
/// that drive a software token: <see cref="SigningSessions.SizeFor"/>); the rest wait their turn rather
/// than open sessions past what the token allows. One owner's signatures hold at most
/// <see cref="OwnerShare"/> of them at once, so an owner whose devices sign a great deal waits on its own
/// share while the node's other owners still find a session.
/// </summary>
public sealed class SiteToken : IDisposable
{
    private const string PinKeyLabel = "daiko site pin key";
    private static readonly byte[] PinKeyId = "daiko-site-pin-key"u8.ToArray();

    private readonly Pkcs11Module _module;
    private readonly ISlot _slot;
    private readonly ISession _login;
    private readonly ConcurrentBag<ISession> _idle = new();
    private readonly ConcurrentDictionary<string, IObjectHandle> _keys = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _seen = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _sessions;
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _ownerTurns = new(StringComparer.Ordinal);

    private SiteToken(Pkcs11Module module, ISlot slot, string pin)
    {
        _module = module;
        _slot = slot;
        Size = SigningSessions.SizeFor(slot);
        _sessions = new SemaphoreSlim(Size, Size);
        _login = slot.OpenSession(SessionType.ReadWrite);
        try
        {
            Pkcs11Module.LoginChecked(_login, pin, retryBusyStore: true);
        }
        catch
        {
            _login.Dispose();
            throw;
        }
    }

    /// <summary>Initializes the site token in a free slot (SoftHSM2) and creates the site PIN key.</summary>
    public static SiteToken Create(SiteTokenOptions options, string soPin, string pin)
    {
        var module = Pkcs11Module.Acquire(options.ModulePath, options.SoftHsmConf);
        try
        {
            if (module.FindSlot(options.TokenLabel, expectPresent: false) is not null) throw new InvalidOperationException($"a token labelled '{options.TokenLabel}' exists already");
            var free = module.FreeSlot();
            free.InitToken(soPin, options.TokenLabel);
            var slot = module.FindSlot(options.TokenLabel) ?? throw new InvalidOperationException("the new site token is not visible");
            using (var so = slot.OpenSession(SessionType.ReadWrite))
            {
                so.Login(CKU.CKU_SO, soPin);
                so.InitPin(pin);
                so.Logout();
            }
            var token = new SiteToken(module, slot, pin);
            token.EnsurePinKey();
            return token;
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>Opens the site token and logs in with the site credential.</summary>
    public static SiteToken Open(SiteTokenOptions options, string pin)
    {
        var module = Pkcs11Module.Acquire(options.ModulePath, options.SoftHsmConf);
        try
        {
            var token = LoggedIn(module, options.TokenLabel, pin);
            token.EnsurePinKey();
            return token;
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The site token, logged in. A login SoftHSM2 still answers "PIN not initialized" or a general error
    /// after the login's own tries (its view of the token was read while another process rewrote the file,
    /// and it keeps that view) is tried again with the module loaded anew (<see cref="Pkcs11Module.ReloadAtOpen"/>).
    /// </summary>
    private static SiteToken LoggedIn(Pkcs11Module module, string label, string pin)
    {
        for (var reload = 0; ; reload++)
        {
            var slot = module.FindSlotAtOpen(label) ?? throw new InvalidOperationException($"the site token '{label}' is not present in the PKCS#11 module");
            try
            {
                return new SiteToken(module, slot, pin);
            }
            catch (Pkcs11Exception e) when (e.RV is CKR.CKR_USER_PIN_NOT_INITIALIZED or CKR.CKR_GENERAL_ERROR)
            {
                if (!module.ReloadAtOpen(reload)) throw;
            }
        }
    }

    /// <summary>
    /// A health check (<c>host serve --console</c>'s <c>/healthz</c>): the token answers a search in a
    /// pooled session and, the site still logged in, finds the site PIN key; throws when it does not.
    /// </summary>
    public void Probe() => With(session => PinKeys(session) == 1 ? 0 : throw new CardNotReadyException("the site token does not show the site PIN key"));

    /// <summary>The site PIN keys the token shows (a private object: none unless logged in).</summary>
    private int PinKeys(ISession session)
    {
        var f = _module.Factories.ObjectAttributeFactory;
        return session.FindAllObjects([f.Create(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY), f.Create(CKA.CKA_ID, PinKeyId)]).Count;
    }

    /// <summary>Creates the site PIN key unless the token has it.</summary>
    private void EnsurePinKey() => With(session =>
    {
        if (PinKeys(session) > 0) return 0;
        var f = _module.Factories.ObjectAttributeFactory;
        session.GenerateKey(_module.Factories.MechanismFactory.Create(CKM.CKM_GENERIC_SECRET_KEY_GEN),
        [
            f.Create(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY),
            f.Create(CKA.CKA_KEY_TYPE, CKK.CKK_GENERIC_SECRET),
            f.Create(CKA.CKA_VALUE_LEN, 32UL),
            f.Create(CKA.CKA_TOKEN, true),
            f.Create(CKA.CKA_PRIVATE, true),
            f.Create(CKA.CKA_SENSITIVE, true),
            f.Create(CKA.CKA_EXTRACTABLE, false),
            f.Create(CKA.CKA_SIGN, true),
            f.Create(CKA.CKA_VERIFY, true),
            f.Create(CKA.CKA_ID, PinKeyId),
            f.Create(CKA.CKA_LABEL, PinKeyLabel),
        ]);
        return 0;
    });

    /// <summary>HMAC-SHA256 under the site PIN key of (owner, purpose, secret): the verifier stored for a PIN or admin code.</summary>
    public byte[] PinVerifier(string owner, string purpose, string secret)
    {
        var message = Encoding.UTF8.GetBytes($"daiko-pin\0{owner}\0{purpose}\0{secret}");
        try
        {
            // Charged to the owner's share like its signatures: one owner's devices unlocking over and over do not hold every session.
            return AsOwner(owner, session => session.Sign(_module.Factories.MechanismFactory.Create(CKM.CKM_SHA256_HMAC), Key(session, "pin", PinKeyId, CKO.CKO_SECRET_KEY), message));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(message);
        }
    }

    /// <summary>Generates an owner's TLS identity key and purse key (P-256), replacing any left from an earlier attempt; their SubjectPublicKeyInfos.</summary>
    public (byte[] Tls, byte[] Purse) GenerateOwnerKeys(string owner) => With(session =>
    {
        var f = _module.Factories.ObjectAttributeFactory;
        foreach (var kind in new[] { OwnerKey.Tls, OwnerKey.Purse })
        {
            foreach (var old in session.FindAllObjects([f.Create(CKA.CKA_ID, KeyId(owner, kind))])) session.DestroyObject(old);
            _keys.TryRemove(owner + "/" + kind, out _);
        }
        var tls = KeyTemplates.GenerateKeyPair(_module, session, HomeCardKeyType.P256, KeyId(owner, OwnerKey.Tls), Label(owner, OwnerKey.Tls));
        var purse = KeyTemplates.GenerateKeyPair(_module, session, HomeCardKeyType.P256, KeyId(owner, OwnerKey.Purse), Label(owner, OwnerKey.Purse));
        return (tls, purse);
    });

    /// <summary>Sessions in use at once, at most.</summary>
    public int Size { get; }

    /// <summary>Sessions one owner's signatures hold at once, at most: half of <see cref="Size"/>, at least one.</summary>
    public int OwnerShare => Math.Max(1, Size / 2);

    /// <summary>Runs with a session held, before its work, naming the owner whose signature it is (null for other work); tests use it to hold signatures in the token.</summary>
    internal Action<string?>? Leased { get; set; }

    /// <summary>
    /// The longest a token operation waits on a thread for a session or its owner's turn: a token that answers nothing
    /// (an HSM gone quiet) fails the request, and the health check, rather than holding the thread without end.
    /// </summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private TimeoutException Busy() => new($"the site token had no free session for {Patience.TotalSeconds:0} s (it signs {Size} at once)");

    private SemaphoreSlim TurnsOf(string owner) => _ownerTurns.GetOrAdd(owner, _ => new SemaphoreSlim(OwnerShare, OwnerShare));

    /// <summary>
    /// ECDSA (r||s) over a hash with one of the owner's keys, once the owner's share and the token have a session for it
    /// (waiting on this thread, at most <see cref="Patience"/> for each). <paramref name="stillAllowed"/> runs at the
    /// owner's turn and again with the session held, just before the token signs, and throws to refuse: the card may have been
    /// locked while it waited (the first, holding no session, is the one that reads the store when the card is not ready).
    /// </summary>
    public byte[] SignHash(string owner, OwnerKey kind, byte[] hash, Action stillAllowed) => AsOwner(owner, session =>
    {
        stillAllowed();
        return SignWith(session, owner, kind, hash);
    }, stillAllowed);

    /// <summary>
    /// Runs <paramref name="work"/> in a session once the owner's share has a turn for it and the token a session (waiting
    /// on this thread); <paramref name="first"/>, if given, runs at the turn, before a session is taken.
    /// </summary>
    private T AsOwner<T>(string owner, Func<ISession, T> work, Action? first = null)
    {
        var turns = TurnsOf(owner);
        if (!turns.Wait(Patience)) throw Busy();
        try
        {
            // A check that may read the store (a card not ready is read again) does so holding no token session.
            first?.Invoke();
            return With(work, owner);
        }
        finally
        {
            turns.Release();
        }
    }

    /// <summary>
    /// As <see cref="SignHash"/>, waiting for the owner's turn and the token's session without holding a thread (a TLS
    /// handshake's signature). <paramref name="stillAllowed"/> runs at the owner's turn and again once the session is held, just before the token signs,
    /// and throws to refuse: the card may have been locked while the signature waited.
    /// </summary>
    public async ValueTask<byte[]> SignHashAsync(string owner, OwnerKey kind, byte[] hash, Action stillAllowed, CancellationToken cancellationToken)
    {
        var turns = TurnsOf(owner);
        await turns.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Checked first at the owner's turn: a card not ready is read again from the store, and that read holds no token session.
            stillAllowed();
            await _sessions.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                return InSession(session =>
                {
                    stillAllowed();
                    return SignWith(session, owner, kind, hash);
                }, owner);
            }
            finally
            {
                _sessions.Release();
            }
        }
        finally
        {
            turns.Release();
        }
    }

    private byte[] SignWith(ISession session, string owner, OwnerKey kind, byte[] hash) =>
        session.Sign(_module.Factories.MechanismFactory.Create(CKM.CKM_ECDSA), Key(session, owner + "/" + kind, KeyId(owner, kind), CKO.CKO_PRIVATE_KEY), hash);

    /// <summary>A PKCS#10 request for the owner's TLS key, signed in the token.</summary>
    public byte[] CreateCertificateSigningRequest(string owner, byte[] tlsKeyInfo, string subject) => With(session =>
    {
        using var ec = ECDsa.Create();
        ec.ImportSubjectPublicKeyInfo(tlsKeyInfo, out _);
        var key = Key(session, owner + "/" + OwnerKey.Tls, KeyId(owner, OwnerKey.Tls), CKO.CKO_PRIVATE_KEY);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest(subject, ec, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509KeyUsageExtension(System.Security.Cryptography.X509Certificates.X509KeyUsageFlags.DigitalSignature, true));
        using var signer = new SessionECDsa(session, _module, key, ec.ExportParameters(false));
        return request.CreateSigningRequest(System.Security.Cryptography.X509Certificates.X509SignatureGenerator.CreateForECDsa(signer));
    });

    /// <summary>The purse seal's counter kept for the owner in the token (its highest data object); null before the first seal.</summary>
    /// <remarks>
    /// Another node writing the counter (a new object, then the old ones destroyed) can make SoftHSM2's
    /// file store show this process no counter object for a moment. The counter never moves back, so a
    /// read that finds none, or a value below one this process saw already, is read again a few times,
    /// and never reported below the highest value seen.
    /// </remarks>
    public long? ReadPurseCounter(string owner)
    {
        _seen.TryGetValue(owner, out var seen);
        long? read = null;
        for (var attempt = 1; attempt <= 4; attempt++)
        {
            read = With(session => TokenCounter.Read(_module, session, CounterLabel(owner)));
            if (read is { } value && value >= seen) break;
            Thread.Sleep(5 * attempt);
        }
        if (read is not { } found) return seen > 0 ? seen : null;
        return _seen.AddOrUpdate(owner, found, (_, old) => Math.Max(old, found));
    }

    /// <summary>Moves the owner's purse counter up to <paramref name="value"/> (never back; any node may, at once): a new data object, then the old ones destroyed (a crash leaves two; the highest counts).</summary>
    public void WritePurseCounter(string owner, long value)
    {
        With(session =>
        {
            TokenCounter.Advance(_module, session, CounterLabel(owner), value);
            return true;
        });
        _seen.AddOrUpdate(owner, value, (_, old) => Math.Max(old, value));
    }

    private IObjectHandle Key(ISession session, string cacheKey, byte[] id, CKO objectClass)
    {
        if (_keys.TryGetValue(cacheKey, out var known)) return known;
        var f = _module.Factories.ObjectAttributeFactory;
        var found = session.FindAllObjects([f.Create(CKA.CKA_CLASS, objectClass), f.Create(CKA.CKA_ID, id)]);
        if (found.Count != 1) throw new CardNotReadyException("this owner's key is missing from the site token");
        return _keys[cacheKey] = found[0];
    }

    private static byte[] KeyId(string owner, OwnerKey kind) => Encoding.UTF8.GetBytes(Label(owner, kind));

    private static string Label(string owner, OwnerKey kind) => $"daiko:{owner}:{(kind == OwnerKey.Tls ? "tls" : "purse")}";

    private static string CounterLabel(string owner) => $"daiko:{owner}:purse-counter";

    /// <summary>Runs <paramref name="work"/> in a session of the pool once one is free (waiting on this thread).</summary>
    private T With<T>(Func<ISession, T> work, string? owner = null)
    {
        if (!_sessions.Wait(Patience)) throw Busy();
        try
        {
            return InSession(work, owner);
        }
        finally
        {
            _sessions.Release();
        }
    }

    /// <summary>Runs <paramref name="work"/> in an idle session, or a new one; the caller holds a place in <see cref="_sessions"/>.</summary>
    private T InSession<T>(Func<ISession, T> work, string? owner)
    {
        if (!_idle.TryTake(out var session)) session = _slot.OpenSession(SessionType.ReadWrite);
        try
        {
            Leased?.Invoke(owner);
            var result = work(session);
            _idle.Add(session);
            return result;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        while (_idle.TryTake(out var session)) session.Dispose();
        try { _login.Logout(); } catch (Pkcs11Exception) { }
        _login.Dispose();
        _module.Dispose();
    }
}
