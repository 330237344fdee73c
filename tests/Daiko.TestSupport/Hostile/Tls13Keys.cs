using System.Security.Cryptography;
using System.Text;

namespace Daiko.TestSupport.Hostile;

/// <summary>
/// The TLS 1.3 key schedule for TLS_AES_128_GCM_SHA256 (RFC 8446 §7), written for the hostile peer on
/// .NET's own HKDF and HMAC so that the peer does not share code with the engine it attacks.
/// </summary>
internal static class Tls13Keys
{
    public static byte[] ExpandLabel(byte[] secret, string label, ReadOnlySpan<byte> context, int length)
    {
        var full = Encoding.ASCII.GetBytes("tls13 " + label);
        var info = new byte[2 + 1 + full.Length + 1 + context.Length];
        info[0] = (byte)(length >> 8);
        info[1] = (byte)length;
        info[2] = (byte)full.Length;
        full.CopyTo(info, 3);
        info[3 + full.Length] = (byte)context.Length;
        context.CopyTo(info.AsSpan(4 + full.Length));
        return HKDF.Expand(HashAlgorithmName.SHA256, secret, length, info);
    }

    public static byte[] Extract(byte[] salt, byte[] ikm) => HKDF.Extract(HashAlgorithmName.SHA256, ikm, salt);

    public static byte[] Derived(byte[] secret) => ExpandLabel(secret, "derived", SHA256.HashData(ReadOnlySpan<byte>.Empty), 32);

    public static byte[] FinishedMac(byte[] trafficSecret, byte[] transcriptHash) =>
        HMACSHA256.HashData(ExpandLabel(trafficSecret, "finished", [], 32), transcriptHash);

    public static byte[] NextGeneration(byte[] trafficSecret) => ExpandLabel(trafficSecret, "traffic upd", [], 32);
}

/// <summary>One direction's AES-128-GCM record protection with its sequence number.</summary>
internal sealed class PeerCipher(byte[] trafficSecret) : IDisposable
{
    private readonly AesGcm _aes = new(Tls13Keys.ExpandLabel(trafficSecret, "key", [], 16), 16);
    private readonly byte[] _iv = Tls13Keys.ExpandLabel(trafficSecret, "iv", [], 12);
    private ulong _sequence;

    public byte[] Secret { get; } = trafficSecret;

    private byte[] Nonce()
    {
        var nonce = (byte[])_iv.Clone();
        for (var i = 0; i < 8; i++) nonce[4 + i] ^= (byte)(_sequence >> (56 - 8 * i));
        _sequence++;
        return nonce;
    }

    /// <summary>A complete TLSCiphertext record carrying <paramref name="content"/> of <paramref name="innerType"/>.</summary>
    public byte[] Seal(byte innerType, ReadOnlySpan<byte> content, int padding = 0)
    {
        var plain = new byte[content.Length + 1 + padding];
        content.CopyTo(plain);
        plain[content.Length] = innerType;
        var length = plain.Length + 16;
        var record = new byte[5 + length];
        record[0] = 23;
        record[1] = 3;
        record[2] = 3;
        record[3] = (byte)(length >> 8);
        record[4] = (byte)length;
        _aes.Encrypt(Nonce(), plain, record.AsSpan(5, plain.Length), record.AsSpan(5 + plain.Length, 16), record.AsSpan(0, 5));
        return record;
    }

    /// <summary>Opens a record (header + body); returns the inner type and content.</summary>
    public (byte Type, byte[] Content) Open(ReadOnlySpan<byte> header, ReadOnlySpan<byte> body)
    {
        var plain = new byte[body.Length - 16];
        _aes.Decrypt(Nonce(), body[..^16], body[^16..], plain, header);
        var end = plain.Length - 1;
        while (end >= 0 && plain[end] == 0) end--;
        if (end < 0) throw new CryptographicException("record without content type");
        return (plain[end], plain[..end]);
    }

    public void Dispose() => _aes.Dispose();
}
