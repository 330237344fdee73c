using System.Security.Cryptography.X509Certificates;

namespace Daiko.Tls.Crypto;

/// <summary>
/// Parsed certificates for exactly the same DER bytes. Decoding a certificate with OpenSSL 3 costs
/// more than verifying the ECDSA signature made with its key, and a home server meets the same market
/// leaf in handshake after handshake: it is parsed once and shared. The cache decides nothing: the key
/// is the whole DER encoding (compared byte for byte, not by hash), so the certificate a handshake
/// gets is exactly what the server sent, and the chain verdict and the CertificateVerify are still
/// checked on every handshake. Shared instances are read only and never disposed by their users; the
/// cache is bounded and an entry it forgets is left to the garbage collector (a handshake may still hold it).
/// </summary>
internal static class ParsedCertificates
{
    /// <summary>How many distinct certificates are kept (markets a home server talks to, with some room).</summary>
    public const int Capacity = 256;

    /// <summary>
    /// Larger certificates are parsed every time, not kept: a hostile market could otherwise make the cache
    /// hold <see cref="Capacity"/> certificates of a TLS record's size each (a market's leaf is 1–2 KiB).
    /// </summary>
    public const int LargestKept = 8 * 1024;

    /// <summary>How many certificates are kept now, for tests.</summary>
    public static int Count
    {
        get
        {
            lock (Gate) return Parsed.Count;
        }
    }

    private static readonly Dictionary<byte[], X509Certificate2> Parsed = new(DerComparer.Instance);
    private static readonly Queue<byte[]> Order = new();
    private static readonly Lock Gate = new();

    /// <summary>Certificates parsed (not taken from the cache) so far, for tests.</summary>
    public static long Parses => Interlocked.Read(ref _parses);

    private static long _parses;

    /// <summary>The certificate these DER bytes encode; shared: do not dispose it. Throws CryptographicException as the loader does.</summary>
    public static X509Certificate2 Get(byte[] der)
    {
        lock (Gate)
        {
            if (Parsed.TryGetValue(der, out var known)) return known;
        }
        var parsed = X509CertificateLoader.LoadCertificate(der);
        Interlocked.Increment(ref _parses);
        if (der.Length > LargestKept) return parsed;
        var key = der.ToArray(); // the caller's array may be reused or wiped; the key is our own copy
        lock (Gate)
        {
            if (Parsed.TryGetValue(key, out var raced)) return raced;
            if (Parsed.Count >= Capacity && Order.TryDequeue(out var oldest)) Parsed.Remove(oldest);
            Parsed[key] = parsed;
            Order.Enqueue(key);
        }
        return parsed;
    }

    private sealed class DerComparer : IEqualityComparer<byte[]>
    {
        public static readonly DerComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x is not null && y is not null && x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] obj)
        {
            var hash = new HashCode();
            hash.AddBytes(obj);
            return hash.ToHashCode();
        }
    }
}
