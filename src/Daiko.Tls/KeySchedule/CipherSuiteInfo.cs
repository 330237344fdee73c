using System.Security.Cryptography;

namespace Daiko.Tls.KeySchedule;

/// <summary>The hash and AEAD a TLS 1.3 cipher suite uses.</summary>
internal sealed partial class CipherSuiteInfo
{
    private CipherSuiteInfo(CipherSuite suite, HashAlgorithmName hash, int hashLength, int keyLength)
    {
        Suite = suite;
        Hash = hash;
        HashLength = hashLength;
        KeyLength = keyLength;
    }

    public CipherSuite Suite { get; }

    public HashAlgorithmName Hash { get; }

    public int HashLength { get; }

    public int KeyLength { get; }

    public const int IvLength = 12;

    public const int TagLength = 16;

    public static readonly CipherSuiteInfo Aes128Gcm = new(CipherSuite.Aes128GcmSha256, HashAlgorithmName.SHA256, 32, 16);
    public static readonly CipherSuiteInfo Aes256Gcm = new(CipherSuite.Aes256GcmSha384, HashAlgorithmName.SHA384, 48, 32);
    public static readonly CipherSuiteInfo ChaCha20 = new(CipherSuite.ChaCha20Poly1305Sha256, HashAlgorithmName.SHA256, 32, 32);

    public static CipherSuiteInfo? Find(CipherSuite suite) => suite switch
    {
        CipherSuite.Aes128GcmSha256 => Aes128Gcm,
        CipherSuite.Aes256GcmSha384 => Aes256Gcm,
        CipherSuite.ChaCha20Poly1305Sha256 when ChaCha20Poly1305.IsSupported => ChaCha20,
        _ => null,
    };

    public static CipherSuiteInfo Get(CipherSuite suite) => Find(suite) ?? throw new NotSupportedException($"cipher suite {suite} is not supported here");

    public byte[] HashData(ReadOnlySpan<byte> data) => Hash == HashAlgorithmName.SHA384 ? SHA384.HashData(data) : SHA256.HashData(data);

    public byte[] Hmac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data) =>
        Hash == HashAlgorithmName.SHA384 ? HMACSHA384.HashData(key, data) : HMACSHA256.HashData(key, data);

    public IncrementalHash NewTranscriptHash() => IncrementalHash.CreateHash(Hash);
}
