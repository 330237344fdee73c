using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Daiko.Tls.Crypto;

/// <summary>
/// The RSA public key of a certificate, by the algorithm its SubjectPublicKeyInfo names: rsaEncryption
/// (1.2.840.113549.1.1.1) keys serve rsa_pss_rsae_* and rsa_pkcs1_*; RSASSA-PSS (1.2.840.113549.1.1.10)
/// keys serve only rsa_pss_pss_* (RFC 8446 §4.2.3), within the hash their parameters allow (RFC 4055).
/// .NET's GetRSAPublicKey returns null for RSASSA-PSS keys, so those are read from the key bits.
/// </summary>
internal static class RsaPublicKeys
{
    public const string RsaEncryptionOid = "1.2.840.113549.1.1.1";
    public const string RsaPssOid = "1.2.840.113549.1.1.10";

    private static readonly Dictionary<string, HashAlgorithmName> HashOids = new()
    {
        ["1.3.14.3.2.26"] = HashAlgorithmName.SHA1,
        ["2.16.840.1.101.3.4.2.1"] = HashAlgorithmName.SHA256,
        ["2.16.840.1.101.3.4.2.2"] = HashAlgorithmName.SHA384,
        ["2.16.840.1.101.3.4.2.3"] = HashAlgorithmName.SHA512,
    };

    /// <summary>The key if the certificate's key may verify <paramref name="scheme"/>; null otherwise.</summary>
    public static RSA? ForScheme(X509Certificate2 certificate, SignatureScheme scheme)
    {
        var oid = certificate.PublicKey.Oid.Value;
        if (!IsPssPss(scheme)) return oid == RsaEncryptionOid ? certificate.GetRSAPublicKey() : null;
        if (oid != RsaPssOid) return null;
        if (!ParametersAllow(certificate.PublicKey.EncodedParameters?.RawData ?? [], SignatureVerifier.HashOf(scheme))) return null;
        var rsa = RSA.Create();
        try
        {
            rsa.ImportRSAPublicKey(certificate.PublicKey.EncodedKeyValue.RawData, out var read);
            if (read != certificate.PublicKey.EncodedKeyValue.RawData.Length) throw new CryptographicException("trailing bytes after the RSA key");
            return rsa;
        }
        catch (CryptographicException)
        {
            rsa.Dispose();
            return null;
        }
    }

    public static bool IsPssPss(SignatureScheme scheme) =>
        scheme is SignatureScheme.RsaPssPssSha256 or SignatureScheme.RsaPssPssSha384 or SignatureScheme.RsaPssPssSha512;

    /// <summary>
    /// RSASSA-PSS-params { [0] hashAlgorithm, [1] maskGenAlgorithm, [2] saltLength, [3] trailerField }:
    /// absent parameters allow any hash; present ones must name this hash for both the digest and MGF1,
    /// a salt no longer than the hash (TLS uses a salt as long as the hash) and trailer field 1.
    /// </summary>
    internal static bool ParametersAllow(ReadOnlySpan<byte> encoded, HashAlgorithmName hash)
    {
        if (encoded.IsEmpty || encoded.SequenceEqual<byte>([0x05, 0x00])) return true;
        try
        {
            var reader = new AsnReader(encoded.ToArray(), AsnEncodingRules.DER);
            var sequence = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            var digest = HashAlgorithmName.SHA1;
            var mgfDigest = HashAlgorithmName.SHA1;
            var salt = 20;
            var tag0 = new Asn1Tag(TagClass.ContextSpecific, 0, true);
            var tag1 = new Asn1Tag(TagClass.ContextSpecific, 1, true);
            var tag2 = new Asn1Tag(TagClass.ContextSpecific, 2, true);
            var tag3 = new Asn1Tag(TagClass.ContextSpecific, 3, true);
            if (sequence.HasData && sequence.PeekTag().HasSameClassAndValue(tag0))
            {
                var explicitHash = sequence.ReadSequence(tag0);
                digest = ReadHashAlgorithm(explicitHash);
                explicitHash.ThrowIfNotEmpty();
            }
            if (sequence.HasData && sequence.PeekTag().HasSameClassAndValue(tag1))
            {
                var explicitMgf = sequence.ReadSequence(tag1);
                var mgf = explicitMgf.ReadSequence();
                explicitMgf.ThrowIfNotEmpty();
                if (mgf.ReadObjectIdentifier() != "1.2.840.113549.1.1.8") return false;
                mgfDigest = ReadHashAlgorithm(mgf);
                mgf.ThrowIfNotEmpty();
            }
            if (sequence.HasData && sequence.PeekTag().HasSameClassAndValue(tag2))
            {
                var explicitSalt = sequence.ReadSequence(tag2);
                if (!explicitSalt.TryReadInt32(out salt)) return false;
                explicitSalt.ThrowIfNotEmpty();
            }
            if (sequence.HasData && sequence.PeekTag().HasSameClassAndValue(tag3))
            {
                var explicitTrailer = sequence.ReadSequence(tag3);
                if (!explicitTrailer.TryReadInt32(out var trailer) || trailer != 1) return false;
                explicitTrailer.ThrowIfNotEmpty();
            }
            sequence.ThrowIfNotEmpty();
            var hashLength = hash == HashAlgorithmName.SHA256 ? 32 : hash == HashAlgorithmName.SHA384 ? 48 : 64;
            return digest == hash && mgfDigest == hash && salt >= 0 && salt <= hashLength;
        }
        catch (AsnContentException)
        {
            return false;
        }
    }

    private static HashAlgorithmName ReadHashAlgorithm(AsnReader reader)
    {
        var algorithm = reader.ReadSequence();
        var oid = algorithm.ReadObjectIdentifier();
        if (algorithm.HasData) algorithm.ReadNull();
        algorithm.ThrowIfNotEmpty();
        return HashOids.TryGetValue(oid, out var name) ? name : default;
    }
}
