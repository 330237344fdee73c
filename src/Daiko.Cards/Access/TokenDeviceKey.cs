using System.Security.Cryptography;
using Daiko.Cards.Tokens;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Access;

/// <summary>
/// The access card's device key on a PKCS#11 token: generated there (P-256, sensitive,
/// non-extractable) and used in a session logged in with the access-card PIN until the card locks.
/// </summary>
internal sealed class TokenDeviceKey : IDisposable
{
    private readonly Pkcs11Module _module;
    private readonly ISession _session;

    private TokenDeviceKey(Pkcs11Module module, ISession session, ECDsa key)
    {
        _module = module;
        _session = session;
        Key = key;
    }

    public ECDsa Key { get; }

    /// <summary>Generates the device key on the token; returns its SubjectPublicKeyInfo.</summary>
    public static byte[] Generate(AccessCardToken token, string pin)
    {
        using var module = Pkcs11Module.Acquire(token.ModulePath, token.SoftHsmConf);
        var slot = module.FindSlot(token.TokenLabel)
            ?? throw new InvalidOperationException($"no PKCS#11 token labelled '{token.TokenLabel}' in {token.ModulePath}");
        using var session = slot.OpenSession(SessionType.ReadWrite);
        try
        {
            Pkcs11Module.LoginChecked(session, pin);
        }
        catch (Pkcs11Exception e) when (IsWrongPin(e.RV))
        {
            throw new ArgumentException($"the access-card PIN does not open the token '{token.TokenLabel}'", nameof(pin));
        }
        try
        {
            var f = module.Factories.ObjectAttributeFactory;
            foreach (var old in session.FindAllObjects([f.Create(CKA.CKA_ID, KeyTemplates.DeviceKeyId)])) session.DestroyObject(old);
            return KeyTemplates.GenerateKeyPair(module, session, HomeCardKeyType.P256, KeyTemplates.DeviceKeyId, KeyTemplates.DeviceKeyLabel);
        }
        finally
        {
            session.Logout();
        }
    }

    /// <summary>
    /// Logs in with the PIN and keeps the session. A wrong PIN throws Pkcs11Exception with a wrong-PIN
    /// code; a token that gives no verdict throws <see cref="CardNotReadyException"/>.
    /// </summary>
    public static TokenDeviceKey Open(AccessCardToken token, string pin, byte[] publicKeyInfo)
    {
        var module = Pkcs11Module.Acquire(token.ModulePath, token.SoftHsmConf);
        ISession? session = null;
        try
        {
            var slot = module.FindSlot(token.TokenLabel)
                ?? throw new CardNotReadyException($"the access card's token '{token.TokenLabel}' is not present");
            session = slot.OpenSession(SessionType.ReadOnly);
            try
            {
                Pkcs11Module.LoginChecked(session, pin);
            }
            catch (Pkcs11Exception e) when (!IsWrongPin(e.RV))
            {
                throw new CardNotReadyException($"the access card's token did not answer ({e.RV}); nothing was counted");
            }
            var key = KeyTemplates.FindPrivateKey(module, session, KeyTemplates.DeviceKeyId)
                ?? throw new CardNotReadyException("the device key is no longer on the access card's token; enroll this terminal again");
            using var publicKey = ECDsa.Create();
            publicKey.ImportSubjectPublicKeyInfo(publicKeyInfo, out _);
            return new TokenDeviceKey(module, session, new SessionECDsa(session, module, key, publicKey.ExportParameters(false)));
        }
        catch
        {
            session?.Dispose();
            module.Dispose();
            throw;
        }
    }

    /// <summary>Changes the token's user PIN (C_SetPIN with the old PIN in a logged-in session).</summary>
    public static void ChangePin(AccessCardToken token, string oldPin, string newPin)
    {
        using var module = Pkcs11Module.Acquire(token.ModulePath, token.SoftHsmConf);
        var slot = module.FindSlot(token.TokenLabel)
            ?? throw new CardNotReadyException($"the access card's token '{token.TokenLabel}' is not present");
        using var session = slot.OpenSession(SessionType.ReadWrite);
        Pkcs11Module.LoginChecked(session, oldPin);
        try
        {
            session.SetPin(oldPin, newPin);
        }
        finally
        {
            session.Logout();
        }
    }

    public static bool IsWrongPin(CKR rv) => rv is CKR.CKR_PIN_INCORRECT or CKR.CKR_PIN_LEN_RANGE or CKR.CKR_PIN_INVALID;

    public void Dispose()
    {
        Key.Dispose();
        try { _session.Logout(); } catch (Pkcs11Exception) { }
        _session.Dispose();
        _module.Dispose();
    }
}
