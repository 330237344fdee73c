using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Daiko.Tls;

/// <summary>
/// An <see cref="ITlsSigner"/> over a .NET key object: a key held in process memory (direct connections
/// with <c>daiko tls get --key</c>, tests) or one whose private operation runs elsewhere (the access
/// card's device key on a PKCS#11 token). Daiko's user key never uses this: it lives in the home card.
/// </summary>
public sealed class SoftwareSigner : ITlsSigner, IDisposable
{
    private readonly AsymmetricAlgorithm _key;
    private readonly TlsCounters? _counters;

    public SoftwareSigner(AsymmetricAlgorithm key, TlsCounters? counters = null)
    {
        _key = key;
        _counters = counters;
        SupportedSchemes = key switch
        {
            ECDsa ec when ec.KeySize == 256 => [SignatureScheme.EcdsaSecp256r1Sha256],
            ECDsa ec when ec.KeySize == 384 => [SignatureScheme.EcdsaSecp384r1Sha384],
            RSA => [SignatureScheme.RsaPssRsaeSha256, SignatureScheme.RsaPssRsaeSha384, SignatureScheme.RsaPssRsaeSha512],
            _ => throw new NotSupportedException("only ECDSA P-256/P-384 and RSA keys are supported"),
        };
    }

    public IReadOnlyList<SignatureScheme> SupportedSchemes { get; }

    /// <summary>Loads a certificate chain and its private key from PEM files.</summary>
    public static ClientCredential LoadCredential(string certificatePem, string keyPem, TlsCounters? counters = null)
    {
        var chain = new X509Certificate2Collection();
        chain.ImportFromPemFile(certificatePem);
        if (chain.Count == 0) throw new InvalidOperationException($"no certificate found in {certificatePem}");
        var pem = File.ReadAllText(keyPem);
        AsymmetricAlgorithm key;
        if (pem.Contains("EC PRIVATE KEY", StringComparison.Ordinal) || chain[0].GetECDsaPublicKey() is not null)
        {
            var ec = ECDsa.Create();
            ec.ImportFromPem(pem);
            key = ec;
        }
        else
        {
            var rsa = RSA.Create();
            rsa.ImportFromPem(pem);
            key = rsa;
        }
        return new ClientCredential(chain.Select(c => c.RawData).ToArray(), new SoftwareSigner(key, counters));
    }

    public ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        if (!SupportedSchemes.Contains(scheme)) throw new NotSupportedException($"this key cannot sign with {scheme}");
        _counters?.AddPublicKeyOperations(1);
        var hash = Crypto.SignatureVerifier.HashOf(scheme);
        var signature = _key switch
        {
            ECDsa ec => ec.SignData(content.Span, hash, DSASignatureFormat.Rfc3279DerSequence),
            RSA rsa => rsa.SignData(content.Span, hash, RSASignaturePadding.Pss),
            _ => throw new NotSupportedException(),
        };
        return ValueTask.FromResult(signature);
    }

    public void Dispose() => _key.Dispose();
}
