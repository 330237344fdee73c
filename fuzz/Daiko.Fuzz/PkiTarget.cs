using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Daiko.Tls;
using Daiko.Tls.Crypto;

namespace Daiko.Fuzz;

/// <summary>
/// Certificate and key import as the product does it: a peer's DER certificate and the signature check
/// with its key (every scheme), PEM certificates and keys, SubjectPublicKeyInfo and PKCS#8 keys,
/// PKCS#12 files (with the key-derivation iteration count capped so one execution stays fast),
/// RSASSA-PSS key parameters, and the peer's ECDHE key share. The first byte picks the importer.
/// </summary>
internal static class PkiTarget
{
    public static readonly FuzzTarget Pki = new("pki",
        "first byte picks: DER certificate + signature check per scheme, PEM certificates, PEM private keys, SPKI/PKCS#8 keys, PKCS#12 (KDF iterations capped), RSASSA-PSS parameters, ECDHE key share",
        Import, e => e is CryptographicException or TlsException);

    internal const int Modes = 7;

    /// <summary>The password the PKCS#12 seeds are sealed with.</summary>
    internal const string Pkcs12Password = "daiko-fuzz";

    /// <summary>At most this many key-derivation iterations per PKCS#12 (per key and in total), so a file cannot make one execution slow.</summary>
    internal const int MaxKdfIterations = 4096;

    private static readonly Pkcs12LoaderLimits Limits = new()
    {
        IndividualKdfIterationLimit = MaxKdfIterations,
        TotalKdfIterationLimit = MaxKdfIterations * 2,
        MaxCertificates = 16,
        MaxKeys = 4,
    };

    private static readonly SignatureScheme[] Schemes = Enum.GetValues<SignatureScheme>();

    private static void Import(byte[] input)
    {
        if (input.Length == 0) return;
        var data = input.AsSpan(1);
        switch (input[0] % Modes)
        {
            case 0:
                using (var certificate = X509CertificateLoader.LoadCertificate(data))
                {
                    foreach (var scheme in Schemes)
                    {
                        _ = SignatureVerifier.Verify(certificate, scheme, "content"u8, data.Length > 64 ? data[^64..] : data, tls12: false);
                        _ = SignatureVerifier.Verify(certificate, scheme, "content"u8, data.Length > 256 ? data[^256..] : data, tls12: true);
                    }
                }
                break;
            case 1:
                var collection = new X509Certificate2Collection();
                collection.ImportFromPem(Encoding.UTF8.GetString(data));
                foreach (var c in collection) c.Dispose();
                break;
            case 2:
            {
                var pem = Encoding.UTF8.GetString(data);
                Either(() => { using var ec = ECDsa.Create(); ec.ImportFromPem(pem); }, () => { using var rsa = RSA.Create(); rsa.ImportFromPem(pem); });
                break;
            }
            case 3:
            {
                var der = data.ToArray();
                Either(() => { using var ec = ECDsa.Create(); ec.ImportSubjectPublicKeyInfo(der, out _); },
                    () => { using var ec = ECDsa.Create(); ec.ImportPkcs8PrivateKey(der, out _); },
                    () => { using var rsa = RSA.Create(); rsa.ImportSubjectPublicKeyInfo(der, out _); },
                    () => { using var rsa = RSA.Create(); rsa.ImportPkcs8PrivateKey(der, out _); });
                break;
            }
            case 4:
                using (var pfx = X509CertificateLoader.LoadPkcs12(data, Pkcs12Password, X509KeyStorageFlags.Exportable | X509KeyStorageFlags.EphemeralKeySet, Limits))
                {
                    pfx.GetECDsaPrivateKey()?.Dispose();
                    pfx.GetRSAPrivateKey()?.Dispose();
                }
                break;
            case 5:
                foreach (var hash in new[] { HashAlgorithmName.SHA256, HashAlgorithmName.SHA384, HashAlgorithmName.SHA512 })
                    _ = RsaPublicKeys.ParametersAllow(data, hash);
                break;
            default:
                if (data.Length == 0) return;
                var group = (data[0] % 3) switch { 0 => NamedGroup.X25519, 1 => NamedGroup.Secp256r1, _ => NamedGroup.Secp384r1 };
                TlsTargets.Agree(group, data[1..].ToArray());
                break;
        }
    }

    /// <summary>Tries each import (as the product tries EC, then RSA); refused only when all refuse.</summary>
    private static void Either(params Action[] imports)
    {
        CryptographicException? refused = null;
        foreach (var import in imports)
        {
            try
            {
                import();
                return;
            }
            catch (CryptographicException e)
            {
                refused = e;
            }
            catch (PlatformNotSupportedException e)
            {
                // A key on a curve OpenSSL lacks: the product's key importers (enrollment, money kid) refuse it as a bad key.
                refused = new CryptographicException("a key on an unsupported curve", e);
            }
            catch (ArgumentException e) when (e.ParamName == "input")
            {
                // Documented for ImportFromPem: no single unencrypted key of a known label in the text.
                refused = new CryptographicException("no usable PEM key", e);
            }
        }
        throw refused!;
    }
}
