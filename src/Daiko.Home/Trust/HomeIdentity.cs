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

    /// <summary>Loads the identity kept in <paramref name="directory"/>, making one first when there is none (a home server's own).</summary>
    public static HomeIdentity LoadOrCreate(string directory)
    {
        var (certPath, keyPath) = FilesIn(directory);
        Directory.CreateDirectory(directory);
        if (!File.Exists(certPath) || !File.Exists(keyPath)) Create(certPath, keyPath);
        return Read(certPath, keyPath);
    }

    /// <summary>
    /// Loads the identity kept in <paramref name="directory"/>, never making one: where several servers share
    /// one identity (a hosted site's nodes), one made by a server started from an incomplete copy would be a
    /// second identity, which terminals that pinned the first refuse. A missing file is a
    /// <see cref="HomeIdentityMissingException"/> naming it and <paramref name="createdBy"/>, the command that makes the identity.
    /// </summary>
    public static HomeIdentity Load(string directory, string createdBy)
    {
        var (certPath, keyPath) = FilesIn(directory);
        var missing = new[] { certPath, keyPath }.Where(p => !File.Exists(p)).ToList();
        if (missing.Count > 0) throw new HomeIdentityMissingException(missing, createdBy);
        return Read(certPath, keyPath);
    }

    private static (string Certificate, string Key) FilesIn(string directory) =>
        (Path.Combine(directory, "home-identity.pem"), Path.Combine(directory, "home-identity.key"));

    private static void Create(string certPath, string keyPath)
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

    private static HomeIdentity Read(string certPath, string keyPath)
    {
        var loaded = X509Certificate2.CreateFromPemFile(certPath, keyPath);
        // Re-import so the key is usable by SslStream on every platform.
        var pfx = X509CertificateLoader.LoadPkcs12(loaded.Export(X509ContentType.Pkcs12), null);
        loaded.Dispose();
        return new HomeIdentity(pfx);
    }

    private const string OwnerPrefix = "daiko-owner-";

    /// <summary>
    /// Issues the device certificate that the terminal presents on the control channel. A hosted
    /// deployment names the device's <paramref name="owner"/> in the subject (O=daiko-owner-NAME): the
    /// certificate then reaches that owner's state and no other.
    /// </summary>
    public X509Certificate2 IssueDeviceCertificate(string deviceId, byte[] devicePublicKeyInfo, string? owner = null)
    {
        var publicKey = PublicKey.CreateFromSubjectPublicKeyInfo(devicePublicKeyInfo, out _);
        var builder = new X500DistinguishedNameBuilder();
        if (owner is not null) builder.AddOrganizationName(OwnerPrefix + owner);
        builder.AddCommonName($"daiko-device-{deviceId}");
        var request = new CertificateRequest(builder.Build(), publicKey, HashAlgorithmName.SHA256);
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

    /// <summary>The owner a device certificate names (O=daiko-owner-NAME), or null (a home server's own devices).</summary>
    public static string? OwnerOf(X509Certificate2 certificate)
    {
        foreach (var rdn in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (rdn.GetSingleElementType().Value == "2.5.4.10" && rdn.GetSingleElementValue() is { } value && value.StartsWith(OwnerPrefix, StringComparison.Ordinal))
                return value[OwnerPrefix.Length..];
        }
        return null;
    }

    public void Dispose() => Certificate.Dispose();
}

/// <summary>
/// The identity's files are not where <see cref="HomeIdentity.Load"/> looked: one sentence naming them and
/// the command that makes them (a hosted node refuses to start with it, rather than make another identity).
/// </summary>
public sealed class HomeIdentityMissingException(IReadOnlyList<string> missing, string createdBy)
    : FileNotFoundException(
        $"the identity {(missing.Count == 1 ? "file " + missing[0] + " is" : "files " + string.Join(" and ", missing) + " are")} missing: "
        + $"it is made once, by '{createdBy}'; copy it from the directory where that ran rather than start without it",
        missing[0]);
