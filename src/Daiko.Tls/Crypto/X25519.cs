using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Daiko.Tls.Crypto;

/// <summary>
/// X25519 (RFC 7748) for ephemeral key shares, straight through libsodium's scalar multiplication (the
/// library NSec wraps, shipped with it). NSec keeps every key and shared secret in guarded pages of
/// their own (an mmap, two mprotects and a munmap each), which cost a home server more than the curve
/// arithmetic on every full handshake. An ephemeral private key lives here in a pinned array (never
/// moved, so never copied by the garbage collector), for one handshake, and is wiped when the key share
/// is disposed; the shared secret goes to the key schedule as every other secret of the handshake does.
/// </summary>
internal static class X25519
{
    public const int KeySize = 32;

    static X25519()
    {
        // Picks the fastest implementation for this processor; safe to call more than once and from NSec too.
        if (SodiumInit() < 0) throw new CryptographicException("libsodium could not be initialised");
    }

    /// <summary>A new random private key (or a copy of <paramref name="fixedKey"/>, for test vectors), pinned.</summary>
    public static byte[] NewPrivateKey(byte[]? fixedKey = null)
    {
        if (fixedKey is not null && fixedKey.Length != KeySize) throw new ArgumentException("an X25519 private key is 32 bytes", nameof(fixedKey));
        var key = GC.AllocateArray<byte>(KeySize, pinned: true);
        if (fixedKey is null) RandomNumberGenerator.Fill(key);
        else fixedKey.CopyTo(key, 0);
        return key;
    }

    public static byte[] PublicKeyOf(byte[] privateKey)
    {
        var publicKey = new byte[KeySize];
        if (ScalarMultBase(publicKey, privateKey) != 0) throw new CryptographicException("X25519 public key computation failed");
        return publicKey;
    }

    /// <summary>The shared secret with <paramref name="peer"/>, or null when it is all zeros (a low-order point, RFC 7748 §6.1).</summary>
    public static byte[]? Agree(byte[] privateKey, ReadOnlySpan<byte> peer)
    {
        if (peer.Length != KeySize) throw new ArgumentException("an X25519 public key is 32 bytes", nameof(peer));
        var shared = new byte[KeySize];
        // libsodium refuses (-1) a result of all zeros.
        return ScalarMult(shared, privateKey, peer.ToArray()) == 0 ? shared : null;
    }

#pragma warning disable SYSLIB1054 // LibraryImport needs unsafe code, which this assembly does not allow; byte[] arguments are pinned by the marshaller
    [DllImport("libsodium", EntryPoint = "sodium_init")]
    private static extern int SodiumInit();

    [DllImport("libsodium", EntryPoint = "crypto_scalarmult_curve25519_base")]
    private static extern int ScalarMultBase(byte[] q, byte[] n);

    [DllImport("libsodium", EntryPoint = "crypto_scalarmult_curve25519")]
    private static extern int ScalarMult(byte[] q, byte[] n, byte[] p);
#pragma warning restore SYSLIB1054
}
