using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards.Purse;
using Daiko.Tls;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Tokens;

/// <summary>
/// An <see cref="ECDsa"/> whose private operation runs in a logged-in token session, so standard APIs
/// (CertificateRequest) sign without the key leaving the token: the owner's CSR, and the access card's
/// device key on a token.
/// </summary>
internal sealed class SessionECDsa : ECDsa
{
    private readonly ISession _session;
    private readonly Pkcs11Module _module;
    private readonly IObjectHandle _key;
    private readonly ECParameters _public;

    public SessionECDsa(ISession session, Pkcs11Module module, IObjectHandle key, ECParameters publicParameters)
    {
        _session = session;
        _module = module;
        _key = key;
        _public = publicParameters;
        KeySizeValue = publicParameters.Q.X!.Length * 8;
        LegalKeySizesValue = [new KeySizes(256, 384, 128)];
    }

    public override byte[] SignHash(byte[] hash) => _session.Sign(_module.Factories.MechanismFactory.Create(CKM.CKM_ECDSA), _key, hash);

    public override bool VerifyHash(byte[] hash, byte[] signature)
    {
        using var ec = Create(_public);
        return ec.VerifyHash(hash, signature);
    }

    public override ECParameters ExportParameters(bool includePrivateParameters) =>
        includePrivateParameters ? throw new CryptographicException("this private key lives in a PKCS#11 token and cannot be exported") : _public;

    public override void ImportParameters(ECParameters parameters) => throw new NotSupportedException();
}

/// <summary>RSA-PSS signatures for a CSR, made in the token.</summary>
internal sealed class TokenRsaSignatureGenerator : X509SignatureGenerator
{
    private readonly ISession _session;
    private readonly Pkcs11Module _module;
    private readonly RSAParameters _public;
    private readonly IObjectHandle _key;

    public TokenRsaSignatureGenerator(ISession session, Pkcs11Module module, RSAParameters publicParameters, IObjectHandle key)
    {
        _session = session;
        _module = module;
        _public = publicParameters;
        _key = key;
    }

    public override byte[] GetSignatureAlgorithmIdentifier(HashAlgorithmName hashAlgorithm)
    {
        using var rsa = RSA.Create(_public);
        return CreateForRSA(rsa, RSASignaturePadding.Pss).GetSignatureAlgorithmIdentifier(hashAlgorithm);
    }

    public override byte[] SignData(byte[] data, HashAlgorithmName hashAlgorithm)
    {
        var parameters = _module.Factories.MechanismParamsFactory.CreateCkRsaPkcsPssParams(
            ConvertUtils.UInt64FromCKM(CKM.CKM_SHA256), ConvertUtils.UInt64FromCKG(CKG.CKG_MGF1_SHA256), 32);
        return _session.Sign(_module.Factories.MechanismFactory.Create(CKM.CKM_RSA_PKCS_PSS, parameters), _key, SHA256.HashData(data));
    }

    protected override PublicKey BuildPublicKey()
    {
        using var rsa = RSA.Create(_public);
        return PublicKey.CreateFromSubjectPublicKeyInfo(rsa.ExportSubjectPublicKeyInfo(), out _);
    }
}

/// <summary>
/// CertificateVerify signatures for the TLS engine, made in the home card with its TLS identity key —
/// over TLS 1.3 client CertificateVerify content (RFC 8446 §4.4.3) or a whole TLS 1.2 client handshake
/// (RFC 5246 §7.4.8) only: anything else is refused
/// before the token sees it, so nothing the TLS key signs can stand for a money message.
/// </summary>
internal sealed class HomeCardTlsSigner(HomeCard card) : ITlsSigner
{
    public IReadOnlyList<SignatureScheme> SupportedSchemes => card.KeyType switch
    {
        HomeCardKeyType.P256 => [SignatureScheme.EcdsaSecp256r1Sha256],
        HomeCardKeyType.P384 => [SignatureScheme.EcdsaSecp384r1Sha384],
        _ => [SignatureScheme.RsaPssRsaeSha256, SignatureScheme.RsaPssRsaeSha384],
    };

    /// <summary>The key is in the token: the Certificate leaves while the card signs.</summary>
    public bool SignsElsewhere => true;

    public ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        if (!SupportedSchemes.Contains(scheme)) throw new NotSupportedException($"the home card cannot sign with {scheme}");
        if (!SignedContent.IsClientCertificateVerify(content.Span) && !SignedContent.IsTls12ClientHandshake(content.Span))
        {
            throw new CryptographicException("the home card's TLS key signs TLS 1.3 client CertificateVerify content or a TLS 1.2 client handshake only");
        }
        // Checked and hashed here; signed once the token has room for it (waiting without a thread).
        Func<byte[]> signature = scheme switch
        {
            SignatureScheme.EcdsaSecp256r1Sha256 => Ecdsa(SHA256.HashData(content.Span)),
            SignatureScheme.EcdsaSecp384r1Sha384 => Ecdsa(SHA384.HashData(content.Span)),
            SignatureScheme.RsaPssRsaeSha384 => Pss(SHA384.HashData(content.Span), HashAlgorithmName.SHA384),
            _ => Pss(SHA256.HashData(content.Span), HashAlgorithmName.SHA256),
        };
        return card.SignTlsInTurnAsync(signature, cancellationToken);
    }

    private Func<byte[]> Ecdsa(byte[] hash) => () => ToDer(card.SignTlsHash(hash));

    private Func<byte[]> Pss(byte[] hash, HashAlgorithmName algorithm) => () => card.SignTlsPss(hash, algorithm);

    /// <summary>PKCS#11 returns ECDSA as r||s; TLS wants DER SEQUENCE { r INTEGER, s INTEGER }.</summary>
    internal static byte[] ToDer(ReadOnlySpan<byte> rs)
    {
        var half = rs.Length / 2;
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            writer.WriteIntegerUnsigned(TrimLeadingZeros(rs[..half]));
            writer.WriteIntegerUnsigned(TrimLeadingZeros(rs[half..]));
        }
        return writer.Encode();
    }

    private static ReadOnlySpan<byte> TrimLeadingZeros(ReadOnlySpan<byte> value)
    {
        var i = 0;
        while (i < value.Length - 1 && value[i] == 0) i++;
        return value[i..];
    }
}

/// <summary>The purse key as a COSE signer: its key id is the purse key's SubjectPublicKeyInfo.</summary>
internal sealed class HomeCardMoneySigner(HomeCard card) : Daiko.Money.IMoneySigner
{
    public byte[] KeyId { get; } = card.PurseKeyInfo ?? throw new CardNotReadyException("this card has no purse key yet: unlock it once (PIN1 and PIN2)");

    public byte[] SignStructure(ReadOnlySpan<byte> toBeSigned) => card.SignMoneyStructure(toBeSigned);
}
