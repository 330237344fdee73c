using System.Formats.Asn1;
using System.Security.Cryptography;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Tokens;

/// <summary>
/// The token objects Daiko creates, in one place: the key ids and labels, the attribute templates of a
/// private key (sensitive, non-extractable, private, token) and the EC curves' OIDs.
/// </summary>
internal static class KeyTemplates
{
    /// <summary>The home card's TLS identity key (and its certificate).</summary>
    public static readonly byte[] TlsKeyId = [0xDA, 0x1C, 0x00, 0x01];

    public const string TlsKeyLabel = "daiko user key";

    /// <summary>The home card's purse key: signs money messages only.</summary>
    public static readonly byte[] PurseKeyId = [0xDA, 0x1C, 0x00, 0x02];

    public const string PurseKeyLabel = "daiko purse key";

    /// <summary>The token data object that keeps the purse seal's counter.</summary>
    public const string PurseCounterLabel = "daiko purse counter";

    /// <summary>The access card's device key on a token.</summary>
    public static readonly byte[] DeviceKeyId = "daiko-device-key"u8.ToArray();

    public const string DeviceKeyLabel = "daiko device key";

    public static string CurveOid(HomeCardKeyType keyType) => keyType switch
    {
        HomeCardKeyType.P256 => "1.2.840.10045.3.1.7",
        HomeCardKeyType.P384 => "1.3.132.0.34",
        _ => throw new NotSupportedException($"{keyType} is not an EC key type"),
    };

    public static ECCurve Curve(HomeCardKeyType keyType) => keyType == HomeCardKeyType.P384 ? ECCurve.NamedCurves.nistP384 : ECCurve.NamedCurves.nistP256;

    public static int CoordinateSize(HomeCardKeyType keyType) => keyType == HomeCardKeyType.P384 ? 48 : 32;

    public static HomeCardKeyType EcKeyTypeOfSize(int privateKeyBytes) => privateKeyBytes switch
    {
        32 => HomeCardKeyType.P256,
        48 => HomeCardKeyType.P384,
        _ => throw new NotSupportedException("only P-256 and P-384 keys can be imported"),
    };

    /// <summary>CKA_EC_PARAMS: the DER of the curve's OID.</summary>
    public static byte[] EcParameters(HomeCardKeyType keyType)
    {
        var writer = new AsnWriter(AsnEncodingRules.DER);
        writer.WriteObjectIdentifier(CurveOid(keyType));
        return writer.Encode();
    }

    /// <summary>The attributes every private key Daiko keeps has: on the token, private, sensitive, never extractable, signing only.</summary>
    public static List<IObjectAttribute> PrivateKey(Pkcs11Module module, byte[] id, string label)
    {
        var f = module.Factories.ObjectAttributeFactory;
        return
        [
            f.Create(CKA.CKA_TOKEN, true),
            f.Create(CKA.CKA_PRIVATE, true),
            f.Create(CKA.CKA_SENSITIVE, true),
            f.Create(CKA.CKA_EXTRACTABLE, false),
            f.Create(CKA.CKA_SIGN, true),
            f.Create(CKA.CKA_ID, id),
            f.Create(CKA.CKA_LABEL, label),
        ];
    }

    /// <summary>An existing EC private key written into the token (PKCS#12 import), with the same protections as a generated one.</summary>
    public static List<IObjectAttribute> ImportedEcPrivateKey(Pkcs11Module module, HomeCardKeyType keyType, byte[] d, byte[] id, string label)
    {
        var f = module.Factories.ObjectAttributeFactory;
        var attributes = PrivateKey(module, id, label);
        attributes.Add(f.Create(CKA.CKA_CLASS, CKO.CKO_PRIVATE_KEY));
        attributes.Add(f.Create(CKA.CKA_KEY_TYPE, CKK.CKK_EC));
        attributes.Add(f.Create(CKA.CKA_EC_PARAMS, EcParameters(keyType)));
        attributes.Add(f.Create(CKA.CKA_VALUE, d));
        return attributes;
    }

    /// <summary>Generates a key pair in the token (sensitive, non-extractable); returns its SubjectPublicKeyInfo.</summary>
    public static byte[] GenerateKeyPair(Pkcs11Module module, ISession session, HomeCardKeyType keyType, byte[] id, string label)
    {
        var f = module.Factories.ObjectAttributeFactory;
        var privateAttributes = PrivateKey(module, id, label);
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
        publicAttributes.Add(f.Create(CKA.CKA_EC_PARAMS, EcParameters(keyType)));
        session.GenerateKeyPair(module.Factories.MechanismFactory.Create(CKM.CKM_EC_KEY_PAIR_GEN), publicAttributes, privateAttributes, out var publicKey, out _);
        var point = session.GetAttributeValue(publicKey, [CKA.CKA_EC_POINT])[0].GetValueAsByteArray();
        var raw = new AsnReader(point, AsnEncodingRules.DER).ReadOctetString();
        var size = CoordinateSize(keyType);
        using var ec = ECDsa.Create(new ECParameters
        {
            Curve = Curve(keyType),
            Q = new ECPoint { X = raw.AsSpan(1, size).ToArray(), Y = raw.AsSpan(1 + size, size).ToArray() },
        });
        return ec.ExportSubjectPublicKeyInfo();
    }

    /// <summary>The private key with this id, or null.</summary>
    public static IObjectHandle? FindPrivateKey(Pkcs11Module module, ISession session, byte[] id)
    {
        var f = module.Factories.ObjectAttributeFactory;
        var found = session.FindAllObjects([f.Create(CKA.CKA_CLASS, CKO.CKO_PRIVATE_KEY), f.Create(CKA.CKA_ID, id)]);
        return found.Count == 1 ? found[0] : null;
    }
}
