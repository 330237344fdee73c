using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Daiko.Home.Trust;

/// <summary>
/// The home server's own key and self-signed certificate: its identity on the control channel (pinned
/// by terminals) and the issuer of device certificates. Distinct from the user's key in the home card.
/// </summary>
public sealed class HomeIdentity : IDisposable
{
    private HomeIdentity(X509Certificate2 certificate)
    {
        Certificate = certificate;
        SpkiHash = SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo());
    }

    public X509Certificate2 Certificate { get; }

    /// <summary>SHA-256 of the home server's SubjectPublicKeyInfo: what terminals pin.</summary>
    public byte[] SpkiHash { get; }

    public static HomeIdentity LoadOrCreate(string directory)
    {
        var certPath = Path.Combine(directory, "home-identity.pem");
        var keyPath = Path.Combine(directory, "home-identity.key");
        Directory.CreateDirectory(directory);
        if (!File.Exists(certPath) || !File.Exists(keyPath))
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=Daiko Home Server", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign, true));
            var now = DateTimeOffset.UtcNow;
            using var cert = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(20));
            var keyTemp = keyPath + ".tmp";
            File.WriteAllText(keyTemp, "");
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(keyTemp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            File.WriteAllText(keyTemp, key.ExportPkcs8PrivateKeyPem());
            File.Move(keyTemp, keyPath, overwrite: true);
            File.WriteAllText(certPath, cert.ExportCertificatePem());
        }
        var loaded = X509Certificate2.CreateFromPemFile(certPath, keyPath);
        // Re-import so the key is usable by SslStream on every platform.
        var pfx = X509CertificateLoader.LoadPkcs12(loaded.Export(X509ContentType.Pkcs12), null);
        loaded.Dispose();
        return new HomeIdentity(pfx);
    }

    /// <summary>Issues the device certificate that the terminal presents on the control channel.</summary>
    public X509Certificate2 IssueDeviceCertificate(string deviceId, byte[] devicePublicKeyInfo)
    {
        var publicKey = PublicKey.CreateFromSubjectPublicKeyInfo(devicePublicKeyInfo, out _);
        var request = new CertificateRequest(new X500DistinguishedName($"CN=daiko-device-{deviceId}"), publicKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.2") }, false));
        using var key = Certificate.GetECDsaPrivateKey()!;
        var now = DateTimeOffset.UtcNow;
        return request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(key), now.AddMinutes(-5), now.AddYears(5), RandomNumberGenerator.GetBytes(12));
    }

    /// <summary>
    /// The chain policy for device certificates: exactly this home identity as the root, no
    /// certificate downloads, no revocation fetch — checking a presented certificate never touches the network.
    /// </summary>
    public X509ChainPolicy DeviceChainPolicy()
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
            DisableCertificateDownloads = true,
            VerificationFlags = X509VerificationFlags.IgnoreWrongUsage,
        };
        policy.CustomTrustStore.Add(Certificate);
        return policy;
    }

    /// <summary>Whether <paramref name="certificate"/> was issued by this home server.</summary>
    public bool Issued(X509Certificate2 certificate)
    {
        using var chain = new X509Chain { ChainPolicy = DeviceChainPolicy() };
        return chain.Build(certificate);
    }

    public void Dispose() => Certificate.Dispose();
}
