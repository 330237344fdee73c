using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Daiko.Tls;

/// <summary>
/// Fetches the issuer a certificate's Authority Information Access names, when a server left an
/// intermediate out: the DER certificate, or null when it was not (or may not be) fetched.
/// </summary>
public interface IIssuerFetcher
{
    ValueTask<byte[]?> FetchAsync(Uri url, CancellationToken cancellationToken);
}

/// <summary>
/// Validates a server chain with the platform's X509Chain: path to a trusted root (the system store
/// or, when roots are given, only those), validity period, and the host name against the SAN. The
/// chain is built from what the server sent: the platform's certificate downloads are off, so checking
/// a certificate never makes a network request of its own. Only when an <see cref="IIssuerFetcher"/> is
/// given (opt-in) and the chain stops short are the missing issuers asked of it, by their http AIA URLs,
/// at most <see cref="MaxFetchedIssuers"/> deep.
/// </summary>
public sealed class X509ChainValidator : IServerCertificateValidator
{
    private readonly X509Certificate2Collection? _roots;
    private readonly X509RevocationMode _revocationMode;
    private readonly TimeProvider _time;
    private readonly TlsCounters? _counters;
    private readonly IIssuerFetcher? _issuers;

    /// <summary>How many missing issuers one validation may fetch.</summary>
    public const int MaxFetchedIssuers = 3;

    /// <param name="roots">Trust only these roots; null trusts the system store.</param>
    /// <param name="issuers">Fetches issuers a server left out (opt-in); null: nothing is ever fetched.</param>
    public X509ChainValidator(IEnumerable<X509Certificate2>? roots = null, X509RevocationMode revocationMode = X509RevocationMode.NoCheck,
        TimeProvider? time = null, TlsCounters? counters = null, IIssuerFetcher? issuers = null)
    {
        _roots = roots is null ? null : new X509Certificate2Collection(roots.ToArray());
        _revocationMode = revocationMode;
        _time = time ?? TimeProvider.System;
        _counters = counters;
        _issuers = issuers;
    }

    /// <summary>Loads trust roots from PEM files.</summary>
    public static X509ChainValidator FromPemFiles(IEnumerable<string> pemFiles, TlsCounters? counters = null, IIssuerFetcher? issuers = null)
    {
        var roots = new X509Certificate2Collection();
        foreach (var file in pemFiles) roots.ImportFromPemFile(file);
        return new X509ChainValidator(roots.Cast<X509Certificate2>(), counters: counters, issuers: issuers);
    }

    public async ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
    {
        var verdict = Validate(serverName, chain, out var missingIssuerOf);
        var fetched = new List<byte[]>();
        while (_issuers is not null && missingIssuerOf is not null && fetched.Count < MaxFetchedIssuers)
        {
            var issuer = await FetchIssuerAsync(missingIssuerOf, cancellationToken).ConfigureAwait(false);
            if (issuer is null) break;
            fetched.Add(issuer);
            verdict = Validate(serverName, [.. chain, .. fetched], out missingIssuerOf);
        }
        return verdict;
    }

    /// <summary>The first http AIA issuer of <paramref name="certificate"/> the fetcher returns.</summary>
    private async ValueTask<byte[]?> FetchIssuerAsync(byte[] certificate, CancellationToken cancellationToken)
    {
        using var subject = X509CertificateLoader.LoadCertificate(certificate);
        var aia = subject.Extensions.OfType<X509AuthorityInformationAccessExtension>().FirstOrDefault();
        if (aia is null) return null;
        foreach (var text in aia.EnumerateCAIssuersUris())
        {
            if (!Uri.TryCreate(text, UriKind.Absolute, out var url) || url.Scheme != Uri.UriSchemeHttp) continue;
            if (await _issuers!.FetchAsync(url, cancellationToken).ConfigureAwait(false) is { } issuer) return issuer;
        }
        return null;
    }

    /// <summary>One build; <paramref name="missingIssuerOf"/> is the topmost certificate found when the chain stopped short of a root.</summary>
    private CertificateVerdict Validate(string? serverName, IReadOnlyList<byte[]> chain, out byte[]? missingIssuerOf)
    {
        missingIssuerOf = null;
        if (chain.Count == 0) return CertificateVerdict.Fail(CertificateProblem.Malformed, "the server sent no certificate");
        X509Certificate2 leaf;
        var extra = new X509Certificate2Collection();
        try
        {
            leaf = X509CertificateLoader.LoadCertificate(chain[0]);
            foreach (var der in chain.Skip(1)) extra.Add(X509CertificateLoader.LoadCertificate(der));
        }
        catch (CryptographicException)
        {
            return CertificateVerdict.Fail(CertificateProblem.Malformed, "the server's certificate could not be parsed");
        }
        using (leaf)
        using (var x509 = new X509Chain())
        {
            x509.ChainPolicy.RevocationMode = _revocationMode;
            // Nothing a certificate names (AIA issuers, CRLs) is fetched while it is checked.
            x509.ChainPolicy.DisableCertificateDownloads = true;
            x509.ChainPolicy.VerificationTime = _time.GetUtcNow().UtcDateTime;
            x509.ChainPolicy.ExtraStore.AddRange(extra);
            x509.ChainPolicy.ApplicationPolicy.Add(new Oid("1.3.6.1.5.5.7.3.1"));
            if (_roots is not null)
            {
                x509.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                x509.ChainPolicy.CustomTrustStore.AddRange(_roots);
            }
            var ok = x509.Build(leaf);
            // Each certificate in the built path had its issuer's signature checked.
            _counters?.AddPublicKeyOperations(Math.Max(1, x509.ChainElements.Count - 1));
            if (!ok)
            {
                // Name the server even when no name was asked for (an IP address URL sends no SNI).
                var who = !string.IsNullOrEmpty(serverName) ? serverName
                    : leaf.GetNameInfo(X509NameType.DnsName, false) is { Length: > 0 } dns ? dns : leaf.Subject;
                var status = x509.ChainStatus.Select(s => s.Status).Aggregate(X509ChainStatusFlags.NoError, (a, b) => a | b);
                var verdict = status switch
                {
                    _ when status.HasFlag(X509ChainStatusFlags.NotTimeValid) => CertificateVerdict.Fail(CertificateProblem.Expired, $"the server certificate for {who} is expired or not yet valid"),
                    _ when status.HasFlag(X509ChainStatusFlags.Revoked) => CertificateVerdict.Fail(CertificateProblem.Revoked, $"the server certificate for {who} is revoked"),
                    _ when status.HasFlag(X509ChainStatusFlags.NotSignatureValid) => CertificateVerdict.Fail(CertificateProblem.BadSignature, "a signature in the server's chain does not verify"),
                    _ when status.HasFlag(X509ChainStatusFlags.UntrustedRoot) || status.HasFlag(X509ChainStatusFlags.PartialChain)
                        => CertificateVerdict.Fail(CertificateProblem.UntrustedRoot, $"the server certificate for {who} does not chain to a trusted root"),
                    _ => CertificateVerdict.Fail(CertificateProblem.Other, $"the server's chain was rejected: {status}"),
                };
                if (status.HasFlag(X509ChainStatusFlags.PartialChain) && x509.ChainElements.Count > 0) missingIssuerOf = x509.ChainElements[^1].Certificate.RawData;
                return verdict;
            }
            if (serverName is null)
            {
                return CertificateVerdict.Fail(CertificateProblem.NameMismatch, "no server name was given to check the server certificate against");
            }
            if (!leaf.MatchesHostname(serverName, allowWildcards: true, allowCommonName: false))
            {
                return CertificateVerdict.Fail(CertificateProblem.NameMismatch, $"the server certificate is not valid for {serverName}");
            }
            return CertificateVerdict.Ok;
        }
    }
}
