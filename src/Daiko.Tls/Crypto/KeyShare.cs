using System.Security.Cryptography;

namespace Daiko.Tls.Crypto;

/// <summary>An ephemeral key pair for one group; yields the shared secret once.</summary>
internal sealed class KeyShare : IDisposable
{
    private readonly byte[]? _x25519;
    private readonly ECDiffieHellman? _ecdh;

    private KeyShare(NamedGroup group, byte[]? x25519, ECDiffieHellman? ecdh, byte[] publicKey)
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
                var key = X25519.NewPrivateKey(fixedPrivateKey);
                return new KeyShare(group, key, null, X25519.PublicKeyOf(key));
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
        // A disposed share's X25519 scalar is zeroed: agreeing with it would give a secret anyone can compute.
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            if (_x25519 is not null)
            {
                if (peer.Length != 32) throw TlsException.Illegal("x25519 key share of the wrong length");
                return X25519.Agree(_x25519, peer) ?? throw TlsException.Illegal("x25519 key share produced an all-zero secret");
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

    private bool _disposed;

    public void Dispose()
    {
        _disposed = true;
        if (_x25519 is not null) CryptographicOperations.ZeroMemory(_x25519);
        _ecdh?.Dispose();
    }
}
