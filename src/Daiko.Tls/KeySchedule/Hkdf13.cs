using System.Security.Cryptography;
using System.Text;
using Daiko.Tls.Messages;

namespace Daiko.Tls.KeySchedule;

/// <summary>HKDF-Extract, HKDF-Expand-Label and Derive-Secret of RFC 8446 §7.1.</summary>
internal static class Hkdf13
{
    public static byte[] Extract(CipherSuiteInfo suite, ReadOnlySpan<byte> salt, ReadOnlySpan<byte> ikm)
    {
        Span<byte> zeros = stackalloc byte[suite.HashLength];
        zeros.Clear();
        var prk = new byte[suite.HashLength];
        HKDF.Extract(suite.Hash, ikm.IsEmpty ? zeros : ikm, salt.IsEmpty ? zeros : salt, prk);
        return prk;
    }

    public static byte[] ExpandLabel(CipherSuiteInfo suite, ReadOnlySpan<byte> secret, string label, ReadOnlySpan<byte> context, int length)
    {
        var info = new TlsWriter(10 + label.Length + context.Length);
        info.WriteUInt16((ushort)length);
        info.WriteVector8(Encoding.ASCII.GetBytes("tls13 " + label));
        info.WriteVector8(context);
        var output = new byte[length];
        HKDF.Expand(suite.Hash, secret, output, info.WrittenSpan);
        return output;
    }

    /// <summary>Derive-Secret(secret, label, transcriptHash) where the hash is already computed.</summary>
    public static byte[] DeriveSecret(CipherSuiteInfo suite, ReadOnlySpan<byte> secret, string label, ReadOnlySpan<byte> transcriptHash)
        => ExpandLabel(suite, secret, label, transcriptHash, suite.HashLength);

    public static byte[] EmptyHash(CipherSuiteInfo suite) => suite.HashData(ReadOnlySpan<byte>.Empty);

    /// <summary>The Finished MAC (RFC 8446 §4.4.4) over a transcript hash.</summary>
    public static byte[] FinishedMac(CipherSuiteInfo suite, ReadOnlySpan<byte> baseKey, ReadOnlySpan<byte> transcriptHash)
    {
        var finishedKey = ExpandLabel(suite, baseKey, "finished", ReadOnlySpan<byte>.Empty, suite.HashLength);
        try
        {
            return suite.Hmac(finishedKey, transcriptHash);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(finishedKey);
        }
    }
}
