using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Daiko.Tls;

/// <summary>
/// Remembers positive verdicts of another validator for exactly the same chain and server name, as
/// browsers' certificate verifiers do: a home server that connects to the same market again and again
/// builds and checks the X509 path once per <see cref="TimeToLive"/> instead of on every handshake.
/// Only "trusted" is remembered, never past the leaf's NotAfter, and the cache is bounded. The
/// server's CertificateVerify is still checked on every handshake — the cache covers the chain only.
/// </summary>
public sealed class CachingCertificateValidator : IServerCertificateValidator
{
    private readonly IServerCertificateValidator _inner;
    private readonly TimeProvider _time;
    private readonly int _capacity;
    private readonly Dictionary<string, DateTimeOffset> _trustedUntil = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public CachingCertificateValidator(IServerCertificateValidator inner, TimeSpan? timeToLive = null, int capacity = 1024, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _inner = inner;
        TimeToLive = timeToLive ?? TimeSpan.FromMinutes(5);
        _capacity = capacity;
        _time = time ?? TimeProvider.System;
    }

    public TimeSpan TimeToLive { get; }

    /// <summary>Chains answered from the cache (for tests and --stats).</summary>
    public long Hits => Interlocked.Read(ref _hits);

    private long _hits;

    public async ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
    {
        var key = Key(serverName, chain);
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            if (_trustedUntil.TryGetValue(key, out var until))
            {
                if (now < until)
                {
                    Interlocked.Increment(ref _hits);
                    return CertificateVerdict.Ok;
                }
                _trustedUntil.Remove(key);
            }
        }
        var verdict = await _inner.ValidateAsync(serverName, chain, cancellationToken);
        if (!verdict.Trusted) return verdict;
        DateTimeOffset notAfter;
        try
        {
            var leaf = Crypto.ParsedCertificates.Get(chain[0]);
            notAfter = new DateTimeOffset(leaf.NotAfter.ToUniversalTime(), TimeSpan.Zero);
        }
        catch (CryptographicException)
        {
            return verdict;
        }
        var expires = now + TimeToLive < notAfter ? now + TimeToLive : notAfter;
        lock (_gate)
        {
            if (_trustedUntil.Count >= _capacity)
            {
                foreach (var stale in _trustedUntil.Where(e => e.Value <= now).Select(e => e.Key).ToList()) _trustedUntil.Remove(stale);
                if (_trustedUntil.Count >= _capacity) _trustedUntil.Remove(_trustedUntil.MinBy(e => e.Value).Key);
            }
            _trustedUntil[key] = expires;
        }
        return verdict;
    }

    /// <summary>Forgets every verdict (trust roots changed).</summary>
    public void Clear()
    {
        lock (_gate) _trustedUntil.Clear();
    }

    private static string Key(string? serverName, IReadOnlyList<byte[]> chain)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[4];
        var name = System.Text.Encoding.UTF8.GetBytes((serverName ?? "").ToLowerInvariant());
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(length, name.Length);
        hash.AppendData(length);
        hash.AppendData(name);
        foreach (var der in chain)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(length, der.Length);
            hash.AppendData(length);
            hash.AppendData(der);
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }
}
