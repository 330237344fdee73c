using System.Security.Cryptography;
using Daiko.Cards.Pins;

namespace Daiko.Cards.Access;

/// <summary>
/// The access card's device key in a file: a PKCS#8 EncryptedPrivateKeyInfo (PBES2, PBKDF2-SHA256,
/// AES-256-CBC) under the access-card PIN, written 0600.
/// </summary>
internal static class FileDeviceKey
{
    public const int DefaultIterations = 600_000;

    public static void Write(string path, ECDsa key, string pin, int iterations)
    {
        var encrypted = key.ExportEncryptedPkcs8PrivateKey(pin, new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, iterations));
        CardFiles.WritePrivate(path, encrypted);
    }

    /// <summary>Decrypts the key; a wrong PIN throws CryptographicException.</summary>
    public static ECDsa Read(string path, string pin)
    {
        var key = ECDsa.Create();
        try
        {
            key.ImportEncryptedPkcs8PrivateKey(pin, File.ReadAllBytes(path), out _);
            return key;
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }
}
