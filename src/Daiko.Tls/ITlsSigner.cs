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

    /// <summary>
    /// Whether the key is somewhere a signature takes time to come back from (a token, another machine).
    /// Then a TLS 1.3 client's Certificate is written before the signer is called, so that the server
    /// checks the chain while the signature is made; otherwise (and in TLS 1.2, where the Certificate
    /// is in the clear) the whole flight leaves in one write, waking the server once.
    /// </summary>
    bool SignsElsewhere => false;
}

/// <summary>
/// A signer that is shown what it signs for (assist mode: the home server checks the handshake before its
/// card signs). In a TLS 1.3 handshake the engine calls this overload instead of
/// <see cref="ITlsSigner.SignAsync"/>, with the handshake messages whose hash the content carries (each
/// with its 4-byte header, from the first ClientHello — or the message_hash that replaced it after a
/// HelloRetryRequest — through the client's Certificate). In TLS 1.2 the content is those messages
/// itself, and the plain overload is called.
/// </summary>
public interface ITranscriptSigner : ITlsSigner
{
    ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, ReadOnlyMemory<byte> transcript, CancellationToken cancellationToken);
}

/// <summary>The client's certificate chain (leaf first, DER) and the signer for its key.</summary>
public sealed record ClientCredential(IReadOnlyList<byte[]> CertificateChain, ITlsSigner Signer);
