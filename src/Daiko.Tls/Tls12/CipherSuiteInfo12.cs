using System.Security.Cryptography;

namespace Daiko.Tls.KeySchedule;

/// <summary>
/// The TLS 1.2 suites of the supported profile: ECDHE key exchange, ECDSA or RSA server
/// authentication, AEAD record protection (RFC 5289 AES-GCM, RFC 7905 ChaCha20-Poly1305). The hash is
/// the PRF's and the transcript's; nothing else (CBC, static RSA, DHE) is ever offered.
/// </summary>
internal sealed partial class CipherSuiteInfo
{
    private CipherSuiteInfo(CipherSuite suite, HashAlgorithmName hash, int hashLength, int keyLength, bool ecdsa)
        : this(suite, hash, hashLength, keyLength)
    {
        IsTls12 = true;
        AuthenticatesWithEcdsa = ecdsa;
    }

    /// <summary>A TLS 1.2 suite (PRF key schedule, explicit or XOR nonce, real record types).</summary>
    public bool IsTls12 { get; }

    /// <summary>TLS 1.2 only: the server's certificate key is ECDSA (otherwise RSA).</summary>
    public bool AuthenticatesWithEcdsa { get; }

    public bool IsChaCha20 => Suite is CipherSuite.ChaCha20Poly1305Sha256 or CipherSuite.EcdheEcdsaChaCha20Poly1305Sha256 or CipherSuite.EcdheRsaChaCha20Poly1305Sha256;

    /// <summary>TLS 1.2 write IV length in the key block: a 4-byte salt for GCM, the whole 12-byte nonce mask for ChaCha20.</summary>
    public int Tls12FixedIvLength => IsChaCha20 ? IvLength : 4;

    private static readonly CipherSuiteInfo[] Tls12Suites =
    [
        new(CipherSuite.EcdheEcdsaAes128GcmSha256, HashAlgorithmName.SHA256, 32, 16, ecdsa: true),
        new(CipherSuite.EcdheEcdsaAes256GcmSha384, HashAlgorithmName.SHA384, 48, 32, ecdsa: true),
        new(CipherSuite.EcdheRsaAes128GcmSha256, HashAlgorithmName.SHA256, 32, 16, ecdsa: false),
        new(CipherSuite.EcdheRsaAes256GcmSha384, HashAlgorithmName.SHA384, 48, 32, ecdsa: false),
        new(CipherSuite.EcdheRsaChaCha20Poly1305Sha256, HashAlgorithmName.SHA256, 32, 32, ecdsa: false),
        new(CipherSuite.EcdheEcdsaChaCha20Poly1305Sha256, HashAlgorithmName.SHA256, 32, 32, ecdsa: true),
    ];

    /// <summary>The TLS 1.2 suite, or null if it is outside the profile (or ChaCha20 is unavailable here).</summary>
    public static CipherSuiteInfo? FindTls12(CipherSuite suite) =>
        Tls12Suites.FirstOrDefault(s => s.Suite == suite && (!s.IsChaCha20 || ChaCha20Poly1305.IsSupported));

    /// <summary>A suite of either version.</summary>
    public static CipherSuiteInfo? FindAny(CipherSuite suite) => Find(suite) ?? FindTls12(suite);
}
