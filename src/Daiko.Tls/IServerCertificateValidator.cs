namespace Daiko.Tls;

/// <summary>
/// Decides whether the server's certificate chain is acceptable for <c>serverName</c>.
/// The default implementation uses X509Chain; in assist mode the home server gives the verdict.
/// </summary>
public interface IServerCertificateValidator
{
    ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken);
}

/// <summary>The outcome of validating a server chain. <see cref="Reason"/> is a human sentence when not trusted.</summary>
public sealed record CertificateVerdict(bool Trusted, CertificateProblem Problem, string? Reason)
{
    public static CertificateVerdict Ok { get; } = new(true, CertificateProblem.None, null);
    public static CertificateVerdict Fail(CertificateProblem problem, string reason) => new(false, problem, reason);
}

public enum CertificateProblem
{
    None,
    UntrustedRoot,
    Expired,
    NameMismatch,
    Revoked,
    BadSignature,
    Malformed,
    Other,
}
