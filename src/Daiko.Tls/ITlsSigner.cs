namespace Daiko.Tls;

/// <summary>
/// Produces the client's CertificateVerify signature without the engine ever holding the private key.
/// The key may live in a PKCS#11 token (the home card) or on another machine (assist mode).
/// </summary>
public interface ITlsSigner
{
    /// <summary>The schemes this key can sign with, most preferred first.</summary>
    IReadOnlyList<SignatureScheme> SupportedSchemes { get; }

    /// <summary>
    /// Signs <paramref name="content"/> — the full RFC 8446 §4.4.3 content (64 spaces, context string,
    /// zero byte, transcript hash) — with <paramref name="scheme"/>. The signer hashes as the scheme
    /// requires and returns the signature in TLS wire form (DER for ECDSA).
    /// </summary>
    ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken);
}

/// <summary>The client's certificate chain (leaf first, DER) and the signer for its key.</summary>
public sealed record ClientCredential(IReadOnlyList<byte[]> CertificateChain, ITlsSigner Signer);
