using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Daiko.Samples;

/// <summary>A throw-away CA for the demo and samples: server certificates for localhost, and certificates for public keys held elsewhere.</summary>
public sealed class DemoPki : IDisposable
{
    private readonly ECDsa _rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public DemoPki(string name = "Daiko Demo Root")
    {
        var request = new CertificateRequest($"CN={name}", _rootKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var now = DateTimeOffset.UtcNow;
        Root = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(1));
    }

    public X509Certificate2 Root { get; }

    public X509Certificate2 IssueServer(string host = "localhost")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={host}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(host);
        san.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.1") }, false));
        var now = DateTimeOffset.UtcNow;
        using var cert = request.Create(Root.SubjectName, X509SignatureGenerator.CreateForECDsa(_rootKey), now.AddHours(-1), now.AddDays(30), RandomNumberGenerator.GetBytes(10));
        using var withKey = cert.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>A client certificate with a software key (for the direct-handshake baseline).</summary>
    public X509Certificate2 IssueClient(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var cert = IssueFor(PublicKey.CreateFromSubjectPublicKeyInfo(key.ExportSubjectPublicKeyInfo(), out _), subject);
        using var withKey = cert.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    public X509Certificate2 IssueFor(PublicKey publicKey, string subject)
    {
        var request = new CertificateRequest(new X500DistinguishedName(subject), publicKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.2") }, false));
        var now = DateTimeOffset.UtcNow;
        return request.Create(Root.SubjectName, X509SignatureGenerator.CreateForECDsa(_rootKey), now.AddHours(-1), now.AddDays(30), RandomNumberGenerator.GetBytes(10));
    }

    public void Dispose()
    {
        _rootKey.Dispose();
        Root.Dispose();
    }
}
