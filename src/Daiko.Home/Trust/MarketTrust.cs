using System.Security.Cryptography.X509Certificates;
using Daiko.Tls;

namespace Daiko.Home.Trust;

/// <summary>Trust roots for market chains: DIR/trust/*.pem if any, else the system roots.</summary>
public static class MarketTrust
{
    /// <param name="issuers">Fetches intermediates a market left out (<c>home serve --fetch-missing-intermediates</c>); null: never.</param>
    public static IServerCertificateValidator Load(string directory, IIssuerFetcher? issuers = null)
    {
        var files = TrustFiles(directory);
        return files.Length == 0 ? new X509ChainValidator(issuers: issuers) : X509ChainValidator.FromPemFiles(files, issuers: issuers);
    }

    /// <summary>
    /// The validator a running home server uses: verdicts cached per chain (<see cref="CachingCertificateValidator"/>),
    /// and the roots reloaded, with the cache dropped, within a second of <c>daiko home trust add</c> changing them.
    /// </summary>
    public static IServerCertificateValidator Live(string directory, TimeProvider? time = null, IIssuerFetcher? issuers = null) => new LiveTrust(directory, time, issuers);

    private static int _generation;

    /// <summary>Makes every live validator re-read its roots and drop its cached verdicts at its next use (SIGHUP).</summary>
    public static void ReloadAll() => Interlocked.Increment(ref _generation);

    private static string[] TrustFiles(string directory)
    {
        var trust = Path.Combine(directory, "trust");
        return Directory.Exists(trust) ? Directory.GetFiles(trust, "*.pem").Order(StringComparer.Ordinal).ToArray() : [];
    }

    /// <summary>Looks at the trust directory at most once a second, not on every handshake.</summary>
    private sealed class LiveTrust(string directory, TimeProvider? time, IIssuerFetcher? issuers) : IServerCertificateValidator
    {
        private static readonly TimeSpan RecheckAfter = TimeSpan.FromSeconds(1);
        private readonly Lock _gate = new();
        private readonly TimeProvider _time = time ?? TimeProvider.System;
        private string? _fingerprint;
        private int _generation = -1;
        private DateTimeOffset _checkedAt;
        private CachingCertificateValidator? _current;

        public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
        {
            CachingCertificateValidator current;
            lock (_gate)
            {
                var now = _time.GetUtcNow();
                var generation = Volatile.Read(ref MarketTrust._generation);
                if (_current is null || now - _checkedAt >= RecheckAfter || generation != _generation)
                {
                    var fingerprint = string.Join('|', TrustFiles(directory).Select(f => $"{Path.GetFileName(f)}:{File.GetLastWriteTimeUtc(f).Ticks}"));
                    if (_current is null || fingerprint != _fingerprint || generation != _generation)
                    {
                        _current = new CachingCertificateValidator(Load(directory, issuers), time: _time);
                        _fingerprint = fingerprint;
                        _generation = generation;
                    }
                    _checkedAt = now;
                }
                current = _current;
            }
            return current.ValidateAsync(serverName, chain, cancellationToken);
        }
    }

    /// <summary>Trusts the CA certificates in <paramref name="pemFile"/>; refuses the whole file if one is not a CA.</summary>
    public static void Add(string directory, string pemFile)
    {
        var trust = Path.Combine(directory, "trust");
        var collection = new X509Certificate2Collection();
        collection.ImportFromPemFile(pemFile);
        if (collection.Count == 0) throw new InvalidDataException($"no certificate in {pemFile}");
        if (collection.FirstOrDefault(c => c.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is not { CertificateAuthority: true }) is { } leaf)
        {
            throw new InvalidDataException($"{leaf.Subject} in {pemFile} is not a CA certificate (no basicConstraints CA:TRUE); trust the CA that issued it instead");
        }
        Directory.CreateDirectory(trust);
        foreach (var cert in collection)
        {
            File.WriteAllText(Path.Combine(trust, cert.Thumbprint.ToLowerInvariant() + ".pem"), cert.ExportCertificatePem());
        }
    }

    /// <summary>The roots added with <see cref="Add"/>: SHA-1 thumbprint (lower case), subject, expiry.</summary>
    public static IReadOnlyList<(string Thumbprint, string Subject, DateTime NotAfter)> List(string directory) =>
        TrustFiles(directory).Select(f =>
        {
            using var cert = X509Certificate2.CreateFromPem(File.ReadAllText(f));
            return (Path.GetFileNameWithoutExtension(f), cert.Subject, cert.NotAfter.ToUniversalTime());
        }).ToList();

    /// <summary>Stops trusting the root with this thumbprint (or a unique prefix of at least 8 characters); false if none matches.</summary>
    public static bool Remove(string directory, string thumbprint)
    {
        var matches = TrustFiles(directory).Where(f => thumbprint.Length >= 8 && Path.GetFileNameWithoutExtension(f).StartsWith(thumbprint.ToLowerInvariant(), StringComparison.Ordinal)).ToList();
        if (matches.Count != 1) return false;
        File.Delete(matches[0]);
        return true;
    }
}
