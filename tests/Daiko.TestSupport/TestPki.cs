using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Daiko.TestSupport;

public enum TestKeyKind
{
    EcP256,
    EcP384,
    Rsa2048,
}

/// <summary>A certificate with its private key, also written to PEM files for external servers.</summary>
public sealed record IssuedCertificate(X509Certificate2 Certificate, string CertificatePath, string KeyPath)
{
    public byte[] Der => Certificate.RawData;

    public string Subject => Certificate.Subject;
}

/// <summary>
/// A throw-away PKI for tests: a root CA, a server certificate for localhost/127.0.0.1 and a user
/// (client) certificate, plus helpers to issue broken ones (expired, wrong host, unknown CA).
/// </summary>
public sealed class TestPki
{
    public const string UserSubject = "CN=Alice Example, O=Daiko Users";

    private readonly string _directory;
    private int _serial = 1;

    private TestPki(string directory, X509Certificate2 root, string rootPath)
    {
        _directory = directory;
        Root = root;
        RootPath = rootPath;
    }

    public X509Certificate2 Root { get; }

    /// <summary>PEM file of the root CA certificate.</summary>
    public string RootPath { get; }

    public IssuedCertificate Server { get; private set; } = null!;

    public IssuedCertificate User { get; private set; } = null!;

    public static TestPki Create(string directory, TestKeyKind serverKey = TestKeyKind.EcP256, string rootName = "Daiko Test Root")
    {
        Directory.CreateDirectory(directory);
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={rootName}", rootKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        var root = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(5));
        var safeName = rootName.Replace(' ', '-').ToLowerInvariant();
        var rootPath = Path.Combine(directory, $"{safeName}.pem");
        File.WriteAllText(rootPath, root.ExportCertificatePem());
        var pki = new TestPki(directory, root, rootPath);
        pki.Server = pki.IssueServer("server", "localhost", serverKey);
        pki.User = pki.IssueClient("user", UserSubject);
        return pki;
    }

    /// <summary>Uses <paramref name="server"/> as the server certificate from now on (for broken-certificate tests).</summary>
    public TestPki WithServer(IssuedCertificate server)
    {
        Server = server;
        return this;
    }

    public IssuedCertificate IssueServer(string fileStem, string hostName, TestKeyKind keyKind = TestKeyKind.EcP256, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null,
        IReadOnlyList<string>? otherNames = null)
    {
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(hostName);
        foreach (var name in otherNames ?? []) san.AddDnsName(name);
        if (hostName == "localhost")
        {
            san.AddIpAddress(System.Net.IPAddress.Loopback);
        }
        return Issue(fileStem, $"CN={hostName}", keyKind, "1.3.6.1.5.5.7.3.1", san.Build(), notBefore, notAfter);
    }

    public IssuedCertificate IssueClient(string fileStem, string subject, TestKeyKind keyKind = TestKeyKind.EcP256)
        => Issue(fileStem, subject, keyKind, "1.3.6.1.5.5.7.3.2", null, null, null);

    /// <summary>Issues a certificate under this root for a public key held elsewhere (a token's key).</summary>
    public X509Certificate2 IssueForPublicKey(PublicKey publicKey, string subject, bool clientAuth = true, string? dnsName = null)
    {
        var request = new CertificateRequest(new X500DistinguishedName(subject), publicKey, HashAlgorithmName.SHA256);
        X509Extension? san = null;
        if (dnsName is not null)
        {
            var names = new SubjectAlternativeNameBuilder();
            names.AddDnsName(dnsName);
            san = names.Build();
        }
        AddLeafExtensions(request, clientAuth ? "1.3.6.1.5.5.7.3.2" : "1.3.6.1.5.5.7.3.1", san);
        var now = DateTimeOffset.UtcNow;
        using var issuerKey = Root.GetECDsaPrivateKey()!;
        var generator = X509SignatureGenerator.CreateForECDsa(issuerKey);
        return request.Create(Root.SubjectName, generator, now.AddHours(-1), now.AddDays(30), NextSerial());
    }

    private IssuedCertificate Issue(string fileStem, string subject, TestKeyKind keyKind, string eku, X509Extension? san, DateTimeOffset? notBefore, DateTimeOffset? notAfter)
    {
        var now = DateTimeOffset.UtcNow;
        var from = notBefore ?? now.AddHours(-1);
        var to = notAfter ?? now.AddDays(30);
        X509Certificate2 withKey;
        string keyPem;
        switch (keyKind)
        {
            case TestKeyKind.Rsa2048:
            {
                using var key = RSA.Create(2048);
                var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
                AddLeafExtensions(request, eku, san);
                using var cert = Sign(request, from, to);
                withKey = cert.CopyWithPrivateKey(key);
                keyPem = key.ExportPkcs8PrivateKeyPem();
                break;
            }
            default:
            {
                using var key = ECDsa.Create(keyKind == TestKeyKind.EcP384 ? ECCurve.NamedCurves.nistP384 : ECCurve.NamedCurves.nistP256);
                var request = new CertificateRequest(subject, key, keyKind == TestKeyKind.EcP384 ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA256);
                AddLeafExtensions(request, eku, san);
                using var cert = Sign(request, from, to);
                withKey = cert.CopyWithPrivateKey(key);
                keyPem = key.ExportPkcs8PrivateKeyPem();
                break;
            }
        }
        var certPath = Path.Combine(_directory, fileStem + ".pem");
        var keyPath = Path.Combine(_directory, fileStem + ".key");
        File.WriteAllText(certPath, withKey.ExportCertificatePem());
        File.WriteAllText(keyPath, keyPem);
        return new IssuedCertificate(withKey, certPath, keyPath);
    }

    private X509Certificate2 Sign(CertificateRequest request, DateTimeOffset from, DateTimeOffset to)
    {
        using var issuerKey = Root.GetECDsaPrivateKey()!;
        var generator = X509SignatureGenerator.CreateForECDsa(issuerKey);
        return request.Create(Root.SubjectName, generator, from, to, NextSerial());
    }

    private byte[] NextSerial()
    {
        var serial = new byte[9];
        RandomNumberGenerator.Fill(serial.AsSpan(1));
        serial[0] = (byte)Interlocked.Increment(ref _serial);
        return serial;
    }

    private void AddLeafExtensions(CertificateRequest request, string eku, X509Extension? san)
    {
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid(eku) }, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Root, true, false));
        if (san is not null) request.CertificateExtensions.Add(san);
    }
}
