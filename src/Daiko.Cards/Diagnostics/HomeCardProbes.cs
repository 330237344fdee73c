using Daiko.Cards.Tokens;
using Net.Pkcs11Interop.Common;

namespace Daiko.Cards.Diagnostics;

/// <summary>
/// Hooks for tests and benchmarks only (internal; visible to Daiko.Cards.Tests and Daiko.Bench): they
/// reach the token past the card's state machine, so no product code may call them.
/// </summary>
internal static class HomeCardProbes
{
    /// <summary>For benchmarks: a raw C_Sign with CKM_ECDSA on the card's TLS key, bypassing the state machine and the content check.</summary>
    internal static Func<byte[], byte[]> RawTokenSigner(this HomeCard card, string pin2)
    {
        var session = card.Token.OpenSession(pin1Token: false, readWrite: false);
        try
        {
            session.Login(CKU.CKU_USER, pin2);
        }
        catch (Pkcs11Exception e) when (e.RV == CKR.CKR_USER_ALREADY_LOGGED_IN)
        {
        }
        var key = card.Token.RequireKey(session, KeyTemplates.TlsKeyId);
        var mechanism = card.Token.Module.Factories.MechanismFactory.Create(CKM.CKM_ECDSA);
        return hash => session.Sign(mechanism, key, hash);
    }

    /// <summary>Reads CKA_SENSITIVE, CKA_EXTRACTABLE and the private value of a key (the value must be unreadable). PIN2 is counted.</summary>
    internal static (bool Sensitive, bool Extractable, bool ValueReadable) InspectPrivateKey(this HomeCard card, string pin2, bool purseKey = false)
    {
        lock (card.Pins.Gate)
        {
            using var session = card.Token.OpenSession(pin1Token: false, readWrite: false);
            var mustLogout = card.Pins.LoginOwner(session, pin2);
            try
            {
                var key = card.Token.RequireKey(session, purseKey ? KeyTemplates.PurseKeyId : KeyTemplates.TlsKeyId);
                var attributes = session.GetAttributeValue(key, [CKA.CKA_SENSITIVE, CKA.CKA_EXTRACTABLE]);
                bool readable;
                try
                {
                    var value = session.GetAttributeValue(key, [!purseKey && card.KeyType == HomeCardKeyType.Rsa3072 ? CKA.CKA_PRIVATE_EXPONENT : CKA.CKA_VALUE]);
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
                if (mustLogout) session.Logout();
            }
        }
    }
}
