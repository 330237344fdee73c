using System.Buffers.Binary;
using System.Security.Cryptography;
using Daiko.Tls.KeySchedule;

namespace Daiko.Tls.Records;

/// <summary>
/// AEAD protection of records in one direction under one traffic secret (RFC 8446 §5.2-5.3):
/// per-record nonce = IV xor sequence number, additional data = the record header.
/// </summary>
internal sealed partial class RecordProtection : IDisposable
{
    public const int MaxPlaintext = 1 << 14;
    public const int MaxCiphertext = MaxPlaintext + 256;
    public const int HeaderLength = 5;

    /// <summary>The most a record's protection adds to its content (RFC 8446 §5.2: 2^14 + 256 in all).</summary>
    public const int MaxOverhead = MaxCiphertext - MaxPlaintext;

    private readonly IDisposable _aead;
    private readonly byte[] _iv;
    private readonly byte[] _nonce = new byte[CipherSuiteInfo.IvLength];

    public RecordProtection(CipherSuiteInfo suite, byte[] trafficSecret, ulong sequence = 0)
    {
        Suite = suite;
        TrafficSecret = trafficSecret;
        var (key, iv) = TrafficSecrets.Keys(suite, trafficSecret);
        _iv = iv;
        _aead = suite.Suite == CipherSuite.ChaCha20Poly1305Sha256 ? new ChaCha20Poly1305(key) : new AesGcm(key, CipherSuiteInfo.TagLength);
        CryptographicOperations.ZeroMemory(key);
        Sequence = sequence;
    }

    public CipherSuiteInfo Suite { get; }

    /// <summary>The traffic secret these keys came from (kept for export and KeyUpdate).</summary>
    public byte[] TrafficSecret { get; }

    public ulong Sequence { get; private set; }

    /// <summary>Seals one record into <paramref name="output"/> (header included); returns its length.</summary>
    public int Seal(ContentType type, ReadOnlySpan<byte> content, int padding, Span<byte> output)
    {
        if (Suite.IsTls12) return Seal12(type, content, output);
        var innerLength = content.Length + 1 + padding;
        var recordLength = innerLength + CipherSuiteInfo.TagLength;
        output[0] = (byte)ContentType.ApplicationData;
        output[1] = 0x03;
        output[2] = 0x03;
        BinaryPrimitives.WriteUInt16BigEndian(output[3..], (ushort)recordLength);
        var body = output.Slice(HeaderLength, innerLength);
        content.CopyTo(body);
        body[content.Length] = (byte)type;
        body[(content.Length + 1)..].Clear();
        NextNonce();
        var tag = output.Slice(HeaderLength + innerLength, CipherSuiteInfo.TagLength);
        var header = output[..HeaderLength];
        switch (_aead)
        {
            case AesGcm gcm: gcm.Encrypt(_nonce, body, body, tag, header); break;
            case ChaCha20Poly1305 chacha: chacha.Encrypt(_nonce, body, body, tag, header); break;
        }
        return HeaderLength + recordLength;
    }

    /// <summary>
    /// Opens a protected record in place. Returns the inner content type and the content length
    /// (content starts at the beginning of <paramref name="body"/>).
    /// </summary>
    public (ContentType Type, int Length) Open(ReadOnlySpan<byte> header, Span<byte> body)
    {
        if (Suite.IsTls12) return Open12(header, body);
        if (body.Length < CipherSuiteInfo.TagLength + 1)
        {
            throw new TlsException(TlsError.BadRecordMac, AlertDescription.BadRecordMac, "protected record too short");
        }
        var ciphertext = body[..^CipherSuiteInfo.TagLength];
        var tag = body[^CipherSuiteInfo.TagLength..];
        NextNonce();
        try
        {
            switch (_aead)
            {
                case AesGcm gcm: gcm.Decrypt(_nonce, ciphertext, tag, ciphertext, header); break;
                case ChaCha20Poly1305 chacha: chacha.Decrypt(_nonce, ciphertext, tag, ciphertext, header); break;
            }
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new TlsException(TlsError.BadRecordMac, AlertDescription.BadRecordMac, "record authentication failed");
        }
        // Strip zero padding: the content type is the last non-zero byte.
        var i = ciphertext.Length - 1;
        while (i >= 0 && ciphertext[i] == 0) i--;
        if (i < 0)
        {
            throw TlsException.Unexpected("record with no content type");
        }
        if (i > MaxPlaintext)
        {
            throw new TlsException(TlsError.RecordOverflow, AlertDescription.RecordOverflow, "record plaintext exceeds 2^14 bytes");
        }
        return ((ContentType)ciphertext[i], i);
    }

    private void NextNonce()
    {
        if (Sequence == ulong.MaxValue)
        {
            throw new TlsException(TlsError.ConnectionUnusable, AlertDescription.InternalError, "record sequence number exhausted");
        }
        _iv.CopyTo(_nonce, 0);
        Span<byte> seq = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(seq, Sequence);
        for (var i = 0; i < 8; i++) _nonce[4 + i] ^= seq[i];
        Sequence++;
    }

    public void Dispose()
    {
        _aead.Dispose();
        if (_key12 is not null) CryptographicOperations.ZeroMemory(_key12);
        CryptographicOperations.ZeroMemory(_iv);
        CryptographicOperations.ZeroMemory(_nonce);
        CryptographicOperations.ZeroMemory(TrafficSecret);
    }
}
