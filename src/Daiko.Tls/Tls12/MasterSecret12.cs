using System.Security.Cryptography;
using System.Text;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Records;

namespace Daiko.Tls.Tls12;

/// <summary>
/// The TLS 1.2 key schedule (RFC 5246 §5, §6.3, §7.4.9) with the Extended Master Secret of RFC 7627:
/// master_secret = PRF(pre_master_secret, "extended master secret", session_hash). There is no other
/// way to make one here, so every TLS 1.2 session of this client binds its handshake.
/// </summary>
internal sealed class MasterSecret12 : IDisposable
{
    public const int Length = 48;
    private const int VerifyDataLength = 12;
    private readonly byte[] _secret;

    private MasterSecret12(CipherSuiteInfo suite, byte[] secret)
    {
        Suite = suite;
        _secret = secret;
    }

    public CipherSuiteInfo Suite { get; }

    /// <summary>A copy of the secret, for a session ticket (it lets a terminal resume without the key).</summary>
    public byte[] Export() => (byte[])_secret.Clone();

    public static MasterSecret12 Extended(CipherSuiteInfo suite, ReadOnlySpan<byte> preMasterSecret, ReadOnlySpan<byte> sessionHash) =>
        new(suite, Prf(suite, preMasterSecret, "extended master secret", sessionHash, Length));

    /// <summary>The master secret of an earlier session (from its ticket).</summary>
    public static MasterSecret12 Resumed(CipherSuiteInfo suite, ReadOnlySpan<byte> masterSecret)
    {
        if (masterSecret.Length != Length) throw new ArgumentException("a TLS 1.2 master secret is 48 bytes");
        return new(suite, masterSecret.ToArray());
    }

    /// <summary>client_write_key, server_write_key, client_write_IV, server_write_IV (AEAD suites have no MAC keys).</summary>
    public KeyBlock12 KeyBlock(ReadOnlySpan<byte> clientRandom, ReadOnlySpan<byte> serverRandom)
    {
        var keyLength = Suite.KeyLength;
        var ivLength = Suite.Tls12FixedIvLength;
        var block = Prf(Suite, _secret, "key expansion", [.. serverRandom, .. clientRandom], 2 * (keyLength + ivLength));
        try
        {
            return new KeyBlock12(
                block.AsSpan(0, keyLength).ToArray(),
                block.AsSpan(keyLength, keyLength).ToArray(),
                block.AsSpan(2 * keyLength, ivLength).ToArray(),
                block.AsSpan(2 * keyLength + ivLength, ivLength).ToArray());
        }
        finally
        {
            CryptographicOperations.ZeroMemory(block);
        }
    }

    public byte[] ClientFinished(ReadOnlySpan<byte> transcriptHash) => Prf(Suite, _secret, "client finished", transcriptHash, VerifyDataLength);

    public byte[] ServerFinished(ReadOnlySpan<byte> transcriptHash) => Prf(Suite, _secret, "server finished", transcriptHash, VerifyDataLength);

    /// <summary>
    /// PRF(secret, label, seed) = P_hash(secret, label + seed), P_hash over the suite's HMAC. Every value derived from
    /// the secret on the way (each A(i), each HMAC input holding one, each output block) is wiped once used.
    /// </summary>
    internal static byte[] Prf(CipherSuiteInfo suite, ReadOnlySpan<byte> secret, string label, ReadOnlySpan<byte> seed, int length)
    {
        byte[] labelSeed = [.. Encoding.ASCII.GetBytes(label), .. seed];
        var output = new byte[length];
        var input = new byte[suite.HashLength + labelSeed.Length];
        labelSeed.CopyTo(input, suite.HashLength);
        byte[]? a = null;
        try
        {
            for (var written = 0; written < length;)
            {
                var next = suite.Hmac(secret, a ?? labelSeed);
                if (a is not null) CryptographicOperations.ZeroMemory(a);
                a = next;
                a.CopyTo(input, 0);
                var chunk = suite.Hmac(secret, input);
                var n = Math.Min(chunk.Length, length - written);
                chunk.AsSpan(0, n).CopyTo(output.AsSpan(written));
                CryptographicOperations.ZeroMemory(chunk);
                written += n;
            }
        }
        finally
        {
            if (a is not null) CryptographicOperations.ZeroMemory(a);
            CryptographicOperations.ZeroMemory(input);
        }
        return output;
    }

    public void Dispose() => CryptographicOperations.ZeroMemory(_secret);
}

/// <summary>The keys one TLS 1.2 connection's records use in each direction.</summary>
internal sealed record KeyBlock12(byte[] ClientKey, byte[] ServerKey, byte[] ClientIv, byte[] ServerIv) : IDisposable
{
    public RecordProtection ClientWriter(CipherSuiteInfo suite) => new(suite, ClientKey, ClientIv, 0);

    public RecordProtection ServerReader(CipherSuiteInfo suite) => new(suite, ServerKey, ServerIv, 0);

    public void Dispose()
    {
        CryptographicOperations.ZeroMemory(ClientKey);
        CryptographicOperations.ZeroMemory(ServerKey);
        // For ChaCha20-Poly1305 the fixed IV is the whole nonce mask; the record layers hold copies.
        CryptographicOperations.ZeroMemory(ClientIv);
        CryptographicOperations.ZeroMemory(ServerIv);
    }
}
