using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards.Pins;
using Daiko.Cards.Tokens;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards;

/// <summary>
/// The owner's operations on the home card: creating its tokens and keys, unblocking with the admin
/// code, the certificate request, and importing a certificate or a PKCS#12 key. Each takes PIN2 (or the
/// admin code) itself; a wrong PIN2 is a strike like any other.
/// </summary>
internal sealed class HomeCardProvisioning(HomeCardOptions options, HomeCardToken token, HomeCardPins pins, HomeCardKeys keys)
{
    /// <summary>Creates both tokens, the TLS identity key and the purse key; writes card.json and fresh counters.</summary>
    public static void CreateTokens(HomeCardOptions options, Pkcs11Module module, HomeCardKeyType keyType, string pin1, string pin2, string adminCode)
    {
        CheckMechanisms(module, keyType);
        InitToken(module, options.TokenLabel, adminCode, pin2);
        InitToken(module, options.Pin1TokenLabel, adminCode, pin1);
        using var session = module.FindSlot(options.TokenLabel)!.OpenSession(SessionType.ReadWrite);
        session.Login(CKU.CKU_USER, pin2);
        try
        {
            var spki = KeyTemplates.GenerateKeyPair(module, session, keyType, KeyTemplates.TlsKeyId, KeyTemplates.TlsKeyLabel);
            var purse = HomeCardToken.GeneratePurseKey(module, session);
            CardConfig.ForKey(keyType, spki, purse).Save(options);
        }
        finally
        {
            session.Logout();
        }
        PersistedCardState.File(options).Write(new PersistedCardState());
    }

    public PinResult Unblock(string adminCode, string newPin1, string newPin2)
    {
        lock (pins.Gate)
        {
            try
            {
                token.SetUserPin(pin1Token: false, adminCode, newPin2);
                token.SetUserPin(pin1Token: true, adminCode, newPin1);
            }
            catch (Pkcs11Exception e) when (e.RV == CKR.CKR_PIN_INCORRECT)
            {
                return new PinResult(PinOutcome.Wrong, -1, pins.State, "wrong admin code: the card stays as it was");
            }
            pins.Unblocked();
            return new PinResult(PinOutcome.Accepted, CountedPinCheck.MaxTries, HomeCardState.Locked, "card unblocked with new PINs; it is locked until PIN1 is given");
        }
    }

    public byte[] CreateCertificateSigningRequest(string subject, string pin2) => AsOwner(pin2, session =>
    {
        var config = keys.Config;
        var publicKey = PublicKey.CreateFromSubjectPublicKeyInfo(config.PublicKeyInfo, out _);
        var key = token.RequireKey(session, KeyTemplates.TlsKeyId);
        CertificateRequest request;
        X509SignatureGenerator generator;
        if (config.KeyType == HomeCardKeyType.Rsa3072)
        {
            using var rsa = RSA.Create();
            rsa.ImportSubjectPublicKeyInfo(config.PublicKeyInfo, out _);
            generator = new TokenRsaSignatureGenerator(session, token.Module, rsa.ExportParameters(false), key);
            request = new CertificateRequest(new X500DistinguishedName(subject), publicKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pss);
        }
        else
        {
            using var ec = ECDsa.Create();
            ec.ImportSubjectPublicKeyInfo(config.PublicKeyInfo, out _);
            generator = X509SignatureGenerator.CreateForECDsa(new SessionECDsa(session, token.Module, key, ec.ExportParameters(false)));
            request = new CertificateRequest(new X500DistinguishedName(subject), publicKey, config.KeyType == HomeCardKeyType.P384 ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA256);
        }
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.2") }, false));
        return request.CreateSigningRequest(generator);
    });

    /// <summary>How often the certificate object is created before a store error is let through.</summary>
    private const int CreateAttempts = 3;

    public void ImportCertificate(byte[] certificateDer, IReadOnlyList<byte[]> chainDer, string pin2)
    {
        using var certificate = X509CertificateLoader.LoadCertificate(certificateDer);
        if (!certificate.PublicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(keys.Config.PublicKeyInfo))
        {
            throw new InvalidOperationException("the certificate is not for this card's key");
        }
        AsOwner(pin2, session =>
        {
            var f = token.Module.Factories.ObjectAttributeFactory;
            for (var attempt = 1; ; attempt++)
            {
                // A renewed certificate replaces the one before it, as would what a failed try left.
                foreach (var old in session.FindAllObjects([f.Create(CKA.CKA_CLASS, CKO.CKO_CERTIFICATE), f.Create(CKA.CKA_ID, KeyTemplates.TlsKeyId)]))
                {
                    session.DestroyObject(old);
                }
                try
                {
                    session.CreateObject(
                    [
                        f.Create(CKA.CKA_CLASS, CKO.CKO_CERTIFICATE),
                        f.Create(CKA.CKA_CERTIFICATE_TYPE, CKC.CKC_X_509),
                        f.Create(CKA.CKA_TOKEN, true),
                        f.Create(CKA.CKA_ID, KeyTemplates.TlsKeyId),
                        f.Create(CKA.CKA_LABEL, "daiko user certificate"),
                        f.Create(CKA.CKA_SUBJECT, certificate.SubjectName.RawData),
                        f.Create(CKA.CKA_VALUE, certificateDer),
                    ]);
                    return 0;
                }
                catch (Pkcs11Exception e) when (e.RV is CKR.CKR_TEMPLATE_INCONSISTENT or CKR.CKR_GENERAL_ERROR && attempt < CreateAttempts)
                {
                    // This template never changes: SoftHSM2 answers so when its file store re-read the
                    // token while the new object's file was being written (seen once in a test run).
                    Thread.Sleep(10 * attempt);
                }
            }
        });
        lock (pins.Gate)
        {
            var pem = string.Concat(new[] { certificateDer }.Concat(chainDer).Select(d => PemEncoding.WriteString("CERTIFICATE", d) + "\n"));
            File.WriteAllText(keys.ChainPath, pem);
            keys.ReloadChain();
        }
    }

    public void ImportPkcs12(byte[] pkcs12, string password, string pin2)
    {
        using var certificate = X509CertificateLoader.LoadPkcs12(pkcs12, password, X509KeyStorageFlags.Exportable | X509KeyStorageFlags.EphemeralKeySet);
        using var key = certificate.GetECDsaPrivateKey()
            ?? throw new NotSupportedException("only EC (P-256, P-384) keys can be imported into the home card; RSA keys must be generated on the token");
        var parameters = key.ExportParameters(includePrivateParameters: true);
        try
        {
            var keyType = KeyTemplates.EcKeyTypeOfSize(parameters.D!.Length);
            AsOwner(pin2, session =>
            {
                var f = token.Module.Factories.ObjectAttributeFactory;
                foreach (var old in session.FindAllObjects([f.Create(CKA.CKA_ID, KeyTemplates.TlsKeyId)])) session.DestroyObject(old);
                session.CreateObject(KeyTemplates.ImportedEcPrivateKey(token.Module, keyType, parameters.D, KeyTemplates.TlsKeyId, KeyTemplates.TlsKeyLabel));
                return 0;
            });
            lock (pins.Gate)
            {
                // The ready session's key handle points at the destroyed key: readiness ends.
                pins.Done();
                var config = CardConfig.ForKey(keyType, certificate.PublicKey.ExportSubjectPublicKeyInfo(), keys.Config.PurseKeyInfo);
                config.Save(options);
                keys.Config = config;
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(parameters.D);
        }
        ImportCertificate(certificate.RawData, [], pin2);
    }

    /// <summary>Runs <paramref name="operation"/> in a read-write session on the key token logged in with PIN2 (counted).</summary>
    private T AsOwner<T>(string pin2, Func<ISession, T> operation)
    {
        lock (pins.Gate)
        {
            using var session = token.OpenSession(pin1Token: false, readWrite: true);
            var mustLogout = pins.LoginOwner(session, pin2);
            try
            {
                return operation(session);
            }
            finally
            {
                if (mustLogout) session.Logout();
            }
        }
    }

    private static void InitToken(Pkcs11Module module, string label, string soPin, string userPin)
    {
        var slot = module.FindSlot(label, expectPresent: false) is null ? module.FreeSlot() : throw new InvalidOperationException($"a token labelled '{label}' already exists");
        slot.InitToken(soPin, label);
        using var session = module.FindSlot(label)!.OpenSession(SessionType.ReadWrite);
        session.Login(CKU.CKU_SO, soPin);
        session.InitPin(userPin);
        session.Logout();
    }

    private static void CheckMechanisms(Pkcs11Module module, HomeCardKeyType keyType)
    {
        var mechanisms = module.FreeSlot().GetMechanismList();
        var needed = keyType == HomeCardKeyType.Rsa3072
            ? new[] { CKM.CKM_RSA_PKCS_KEY_PAIR_GEN, CKM.CKM_RSA_PKCS_PSS, CKM.CKM_EC_KEY_PAIR_GEN, CKM.CKM_ECDSA }
            : new[] { CKM.CKM_EC_KEY_PAIR_GEN, CKM.CKM_ECDSA };
        var missing = needed.Where(m => !mechanisms.Contains(m)).ToList();
        if (missing.Count > 0)
        {
            throw new NotSupportedException(keyType == HomeCardKeyType.Rsa3072 && missing.Contains(CKM.CKM_RSA_PKCS_PSS)
                ? "this token cannot sign RSA-PSS, which TLS 1.3 requires for RSA keys: choose --key-type p256 or p384"
                : $"this token lacks {string.Join(", ", missing)}, which the home card needs");
        }
    }
}
