using System.Security.Cryptography;
using NSec.Cryptography;

namespace Daiko.Tls.Crypto;

/// <summary>An ephemeral key pair for one group; yields the shared secret once.</summary>
internal sealed class KeyShare : IDisposable
{
    private readonly Key? _x25519;
    private readonly ECDiffieHellman? _ecdh;

    private KeyShare(NamedGroup group, Key? x25519, ECDiffieHellman? ecdh, byte[] publicKey)
    {
        Group = group;
        _x25519 = x25519;
        _ecdh = ecdh;
        PublicKey = publicKey;
    }

    public NamedGroup Group { get; }

    public byte[] PublicKey { get; }

    public static bool IsSupported(NamedGroup group) => group is NamedGroup.X25519 or NamedGroup.Secp256r1 or NamedGroup.Secp384r1;

    public static KeyShare Create(NamedGroup group, byte[]? fixedPrivateKey = null)
    {
        switch (group)
        {
            case NamedGroup.X25519:
            {
                var parameters = new KeyCreationParameters { ExportPolicy = KeyExportPolicies.None };
                var key = fixedPrivateKey is null
                    ? Key.Create(KeyAgreementAlgorithm.X25519, parameters)
                    : Key.Import(KeyAgreementAlgorithm.X25519, fixedPrivateKey, KeyBlobFormat.RawPrivateKey, parameters);
                return new KeyShare(group, key, null, key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
            }
            case NamedGroup.Secp256r1:
            case NamedGroup.Secp384r1:
            {
                var curve = group == NamedGroup.Secp256r1 ? ECCurve.NamedCurves.nistP256 : ECCurve.NamedCurves.nistP384;
                ECDiffieHellman ecdh;
                if (fixedPrivateKey is null)
                {
                    ecdh = ECDiffieHellman.Create(curve);
                }
                else
                {
                    ecdh = ECDiffieHellman.Create();
                    ecdh.ImportParameters(new ECParameters { Curve = curve, D = fixedPrivateKey });
                }
                var p = ecdh.ExportParameters(false).Q;
                var encoded = new byte[1 + p.X!.Length + p.Y!.Length];
                encoded[0] = 0x04;
                p.X.CopyTo(encoded, 1);
                p.Y.CopyTo(encoded, 1 + p.X.Length);
                return new KeyShare(group, null, ecdh, encoded);
            }
            default:
                throw new NotSupportedException($"group {group} is not supported");
        }
    }

    /// <summary>The raw shared secret with the server's key share; a malformed share is illegal_parameter.</summary>
    public byte[] Agree(ReadOnlySpan<byte> peer)
    {
        try
        {
            if (_x25519 is not null)
            {
                if (peer.Length != 32) throw TlsException.Illegal("x25519 key share of the wrong length");
                var peerKey = NSec.Cryptography.PublicKey.Import(KeyAgreementAlgorithm.X25519, peer, KeyBlobFormat.RawPublicKey);
                using var shared = KeyAgreementAlgorithm.X25519.Agree(_x25519, peerKey, new SharedSecretCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport })
                    ?? throw TlsException.Illegal("x25519 key share produced an all-zero secret");
                return shared.Export(SharedSecretBlobFormat.RawSharedSecret);
            }
            var size = Group == NamedGroup.Secp256r1 ? 32 : 48;
            if (peer.Length != 1 + 2 * size || peer[0] != 0x04) throw TlsException.Illegal("EC key share is not an uncompressed point of the right size");
            var curve = Group == NamedGroup.Secp256r1 ? ECCurve.NamedCurves.nistP256 : ECCurve.NamedCurves.nistP384;
            using var other = ECDiffieHellman.Create(new ECParameters
            {
                Curve = curve,
                Q = new ECPoint { X = peer.Slice(1, size).ToArray(), Y = peer.Slice(1 + size, size).ToArray() },
            });
            return _ecdh!.DeriveRawSecretAgreement(other.PublicKey);
        }
        catch (CryptographicException e)
        {
            throw new TlsException(TlsError.IllegalParameter, AlertDescription.IllegalParameter, "the server's key share is not a valid point", e);
        }
    }

    public void Dispose()
    {
        _x25519?.Dispose();
        _ecdh?.Dispose();
    }
}
