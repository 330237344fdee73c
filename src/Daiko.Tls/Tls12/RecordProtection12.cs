using System.Buffers.Binary;
using System.Security.Cryptography;
using Daiko.Tls.KeySchedule;

namespace Daiko.Tls.Records;

/// <summary>
/// TLS 1.2 AEAD records (RFC 5246 §6.2.3.3): the outer type is the real one, the additional data is
/// seq_num + type + version + plaintext length. AES-GCM (RFC 5288) sends an 8-byte explicit nonce
/// (the sequence number) after a 4-byte salt from the key block; ChaCha20-Poly1305 (RFC 7905) XORs
/// the sequence number into a 12-byte IV, like TLS 1.3.
/// </summary>
internal sealed partial class RecordProtection
{
    private const int ExplicitNonceLength = 8;
    private readonly byte[]? _key12;

    /// <summary>TLS 1.2 protection from a key-block key and fixed IV, starting at <paramref name="sequence"/>.</summary>
    public RecordProtection(CipherSuiteInfo suite, byte[] key, byte[] fixedIv, ulong sequence)
    {
        if (!suite.IsTls12 || key.Length != suite.KeyLength || fixedIv.Length != suite.Tls12FixedIvLength)
            throw new ArgumentException("TLS 1.2 keys of the wrong shape for the suite");
        Suite = suite;
        TrafficSecret = [];
        _key12 = (byte[])key.Clone();
        _iv = new byte[CipherSuiteInfo.IvLength];
        fixedIv.CopyTo(_iv, 0);
        _aead = suite.IsChaCha20 ? new ChaCha20Poly1305(key) : new AesGcm(key, CipherSuiteInfo.TagLength);
        Sequence = sequence;
    }

    /// <summary>TLS 1.2: the write key and fixed IV (for export of the key block).</summary>
    public (byte[] Key, byte[] FixedIv) Tls12Keys => ((byte[])_key12!.Clone(), _iv.AsSpan(0, Suite.Tls12FixedIvLength).ToArray());

    private int ExplicitLength => Suite.IsChaCha20 ? 0 : ExplicitNonceLength;

    private int Seal12(ContentType type, ReadOnlySpan<byte> content, Span<byte> output)
    {
        var recordLength = ExplicitLength + content.Length + CipherSuiteInfo.TagLength;
        output[0] = (byte)type;
        output[1] = 0x03;
        output[2] = 0x03;
        BinaryPrimitives.WriteUInt16BigEndian(output[3..], (ushort)recordLength);
        Span<byte> aad = stackalloc byte[13];
        AdditionalData(aad, Sequence, type, content.Length);
        NextNonce();
        _nonce.AsSpan(4, ExplicitLength).CopyTo(output.Slice(HeaderLength, ExplicitLength));
        var body = output.Slice(HeaderLength + ExplicitLength, content.Length);
        content.CopyTo(body);
        var tag = output.Slice(HeaderLength + ExplicitLength + content.Length, CipherSuiteInfo.TagLength);
        Encrypt(body, tag, aad);
        return HeaderLength + recordLength;
    }

    private (ContentType Type, int Length) Open12(ReadOnlySpan<byte> header, Span<byte> body)
    {
        if (body.Length < ExplicitLength + CipherSuiteInfo.TagLength)
        {
            throw new TlsException(TlsError.BadRecordMac, AlertDescription.BadRecordMac, "protected record too short");
        }
        var type = (ContentType)header[0];
        var length = body.Length - ExplicitLength - CipherSuiteInfo.TagLength;
        if (length > MaxPlaintext)
        {
            throw new TlsException(TlsError.RecordOverflow, AlertDescription.RecordOverflow, "record plaintext exceeds 2^14 bytes");
        }
        Span<byte> aad = stackalloc byte[13];
        AdditionalData(aad, Sequence, type, length);
        NextNonce();
        if (ExplicitLength > 0) body[..ExplicitLength].CopyTo(_nonce.AsSpan(4));
        var ciphertext = body.Slice(ExplicitLength, length);
        var tag = body.Slice(ExplicitLength + length, CipherSuiteInfo.TagLength);
        try
        {
            switch (_aead)
            {
                case AesGcm gcm: gcm.Decrypt(_nonce, ciphertext, tag, ciphertext, aad); break;
                case ChaCha20Poly1305 chacha: chacha.Decrypt(_nonce, ciphertext, tag, ciphertext, aad); break;
            }
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new TlsException(TlsError.BadRecordMac, AlertDescription.BadRecordMac, "record authentication failed");
        }
        // The record layer reads content from the start of the body.
        ciphertext.CopyTo(body);
        return (type, length);
    }

    private void Encrypt(Span<byte> body, Span<byte> tag, ReadOnlySpan<byte> aad)
    {
        switch (_aead)
        {
            case AesGcm gcm: gcm.Encrypt(_nonce, body, body, tag, aad); break;
            case ChaCha20Poly1305 chacha: chacha.Encrypt(_nonce, body, body, tag, aad); break;
        }
    }

    /// <summary>seq_num(8) + type(1) + version(2) + length(2).</summary>
    private static void AdditionalData(Span<byte> aad, ulong sequence, ContentType type, int length)
    {
        BinaryPrimitives.WriteUInt64BigEndian(aad, sequence);
        aad[8] = (byte)type;
        aad[9] = 0x03;
        aad[10] = 0x03;
        BinaryPrimitives.WriteUInt16BigEndian(aad[11..], (ushort)length);
    }
}
