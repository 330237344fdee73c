using System.Security.Cryptography;

namespace Daiko.Tls.KeySchedule;

/// <summary>
/// The TLS 1.3 key schedule as a chain of stages (RFC 8446 §7.1). Each stage is created from the
/// previous one, which is wiped once consumed; a stage can only be reached in order.
/// </summary>
internal sealed class EarlySecret : IDisposable
{
    private readonly byte[] _secret;

    public EarlySecret(CipherSuiteInfo suite, ReadOnlySpan<byte> psk)
    {
        Suite = suite;
        _secret = Hkdf13.Extract(suite, ReadOnlySpan<byte>.Empty, psk);
    }

    public CipherSuiteInfo Suite { get; }

    internal ReadOnlySpan<byte> Value => _secret;

    /// <summary>binder_key for resumption PSKs.</summary>
    public byte[] ResumptionBinderKey() => Hkdf13.DeriveSecret(Suite, _secret, "res binder", Hkdf13.EmptyHash(Suite));

    public byte[] ClientEarlyTrafficSecret(ReadOnlySpan<byte> clientHelloHash) => Hkdf13.DeriveSecret(Suite, _secret, "c e traffic", clientHelloHash);

    public HandshakeSecret Next(ReadOnlySpan<byte> sharedSecret)
    {
        var derived = Hkdf13.DeriveSecret(Suite, _secret, "derived", Hkdf13.EmptyHash(Suite));
        try
        {
            return new HandshakeSecret(Suite, Hkdf13.Extract(Suite, derived, sharedSecret));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(derived);
            Dispose();
        }
    }

    public void Dispose() => CryptographicOperations.ZeroMemory(_secret);
}

internal sealed class HandshakeSecret : IDisposable
{
    private readonly byte[] _secret;

    internal HandshakeSecret(CipherSuiteInfo suite, byte[] secret)
    {
        Suite = suite;
        _secret = secret;
    }

    public CipherSuiteInfo Suite { get; }

    internal ReadOnlySpan<byte> Value => _secret;

    public byte[] ClientTrafficSecret(ReadOnlySpan<byte> helloHash) => Hkdf13.DeriveSecret(Suite, _secret, "c hs traffic", helloHash);

    public byte[] ServerTrafficSecret(ReadOnlySpan<byte> helloHash) => Hkdf13.DeriveSecret(Suite, _secret, "s hs traffic", helloHash);

    public MasterSecret Next()
    {
        var derived = Hkdf13.DeriveSecret(Suite, _secret, "derived", Hkdf13.EmptyHash(Suite));
        try
        {
            return new MasterSecret(Suite, Hkdf13.Extract(Suite, derived, ReadOnlySpan<byte>.Empty));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(derived);
            Dispose();
        }
    }

    public void Dispose() => CryptographicOperations.ZeroMemory(_secret);
}

internal sealed class MasterSecret : IDisposable
{
    private readonly byte[] _secret;

    internal MasterSecret(CipherSuiteInfo suite, byte[] secret)
    {
        Suite = suite;
        _secret = secret;
    }

    public CipherSuiteInfo Suite { get; }

    internal ReadOnlySpan<byte> Value => _secret;

    public byte[] ClientApplicationTrafficSecret(ReadOnlySpan<byte> serverFinishedHash) => Hkdf13.DeriveSecret(Suite, _secret, "c ap traffic", serverFinishedHash);

    public byte[] ServerApplicationTrafficSecret(ReadOnlySpan<byte> serverFinishedHash) => Hkdf13.DeriveSecret(Suite, _secret, "s ap traffic", serverFinishedHash);

    public byte[] ExporterMasterSecret(ReadOnlySpan<byte> serverFinishedHash) => Hkdf13.DeriveSecret(Suite, _secret, "exp master", serverFinishedHash);

    public byte[] ResumptionMasterSecret(ReadOnlySpan<byte> clientFinishedHash) => Hkdf13.DeriveSecret(Suite, _secret, "res master", clientFinishedHash);

    public void Dispose() => CryptographicOperations.ZeroMemory(_secret);
}

/// <summary>Per-secret helpers: traffic keys, key updates, ticket PSKs.</summary>
internal static class TrafficSecrets
{
    public static (byte[] Key, byte[] Iv) Keys(CipherSuiteInfo suite, ReadOnlySpan<byte> trafficSecret) =>
        (Hkdf13.ExpandLabel(suite, trafficSecret, "key", ReadOnlySpan<byte>.Empty, suite.KeyLength),
         Hkdf13.ExpandLabel(suite, trafficSecret, "iv", ReadOnlySpan<byte>.Empty, CipherSuiteInfo.IvLength));

    public static byte[] Update(CipherSuiteInfo suite, ReadOnlySpan<byte> trafficSecret) =>
        Hkdf13.ExpandLabel(suite, trafficSecret, "traffic upd", ReadOnlySpan<byte>.Empty, suite.HashLength);

    public static byte[] TicketPsk(CipherSuiteInfo suite, ReadOnlySpan<byte> resumptionMasterSecret, ReadOnlySpan<byte> nonce) =>
        Hkdf13.ExpandLabel(suite, resumptionMasterSecret, "resumption", nonce, suite.HashLength);
}
