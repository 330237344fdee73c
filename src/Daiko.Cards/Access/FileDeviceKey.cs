using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Daiko.Cards.Pins;

namespace Daiko.Cards.Access;

/// <summary>device-key.enc: the device key's PKCS#8 DER under AES-256-GCM, keyed by Argon2id of the PIN, with the KDF parameters.</summary>
internal sealed record DeviceKeyFile
{
    public const int CurrentFormat = 1;

    [JsonPropertyName("format")] public int Format { get; init; } = CurrentFormat;

    [JsonPropertyName("kdf")] public string Kdf { get; init; } = "argon2id";

    [JsonPropertyName("memory_kib")] public int MemoryKiB { get; init; }

    [JsonPropertyName("passes")] public int Passes { get; init; }

    [JsonPropertyName("parallelism")] public int Parallelism { get; init; } = AccessCardKdf.Parallelism;

    [JsonPropertyName("salt")] public byte[] Salt { get; init; } = [];

    [JsonPropertyName("nonce")] public byte[] Nonce { get; init; } = [];

    [JsonPropertyName("ciphertext")] public byte[] Ciphertext { get; init; } = [];

    [JsonPropertyName("tag")] public byte[] Tag { get; init; } = [];

    public AccessCardKdf Parameters => new(MemoryKiB, Passes);

    /// <summary>The header the AEAD authenticates: the format and every KDF parameter.</summary>
    public byte[] AssociatedData() => Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
        $"daiko-access-card/{Format}|{Kdf}|m={MemoryKiB}|t={Passes}|p={Parallelism}"));
}

/// <summary>
/// The access card's device key in a file (written 0600): <c>device-key.enc</c> under Argon2id of the
/// PIN (<see cref="AccessCardKdf"/>) and AES-256-GCM. Files from before (<c>device-key.p8</c>, PKCS#8
/// under PBKDF2) are read once more and migrated at the next unlock.
/// </summary>
internal static class FileDeviceKey
{
    public const string FileName = "device-key.enc";

    public const string LegacyFileName = "device-key.p8";

    public const int MinimumPinLength = 6;

    public static void CheckPin(string pin)
    {
        if (pin.Length is < MinimumPinLength or > 64)
        {
            throw new ArgumentException($"the access-card PIN must be {MinimumPinLength} to 64 characters", nameof(pin));
        }
    }

    /// <summary>
    /// Writes <paramref name="key"/> under <paramref name="pin"/>: with Argon2id calibrated here when <paramref name="kdf"/>
    /// is null (the calibration's own derivations give the wrapping key), else with the parameters given.
    /// </summary>
    public static void Write(string path, ECDsa key, string pin, AccessCardKdf? kdf)
    {
        var pkcs8 = key.ExportPkcs8PrivateKey();
        try
        {
            var salt = RandomNumberGenerator.GetBytes(AccessCardKdf.SaltLength);
            var (parameters, wrappingKey) = kdf is null ? AccessCardKdf.CalibrateAndDerive(pin, salt) : (kdf, kdf.DeriveKey(pin, salt));
            var ciphertext = new byte[pkcs8.Length];
            var tag = new byte[16];
            DeviceKeyFile file;
            try
            {
                file = new DeviceKeyFile { MemoryKiB = parameters.MemoryKiB, Passes = parameters.Passes, Salt = salt, Nonce = RandomNumberGenerator.GetBytes(12) };
                using var aes = new AesGcm(wrappingKey, tag.Length);
                aes.Encrypt(file.Nonce, pkcs8, ciphertext, tag, file.AssociatedData());
            }
            finally
            {
                CryptographicOperations.ZeroMemory(wrappingKey);
            }
            CardFiles.WritePrivate(path, JsonSerializer.SerializeToUtf8Bytes(file with { Ciphertext = ciphertext, Tag = tag }));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
    }

    /// <summary>The KDF parameters stored in a key file.</summary>
    public static AccessCardKdf ReadParameters(string path) => Load(path).Parameters;

    /// <summary>Decrypts the key; a wrong PIN throws CryptographicException.</summary>
    public static ECDsa Read(string path, string pin)
    {
        var file = Load(path);
        var wrappingKey = file.Parameters.DeriveKey(pin, file.Salt);
        var pkcs8 = new byte[file.Ciphertext.Length];
        try
        {
            using (var aes = new AesGcm(wrappingKey, file.Tag.Length))
            {
                aes.Decrypt(file.Nonce, file.Ciphertext, file.Tag, pkcs8, file.AssociatedData());
            }
            var key = ECDsa.Create();
            key.ImportPkcs8PrivateKey(pkcs8, out _);
            return key;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(wrappingKey);
            CryptographicOperations.ZeroMemory(pkcs8);
        }
    }

    /// <summary>Decrypts a key file from before Argon2id (PKCS#8, PBES2/PBKDF2); a wrong PIN throws CryptographicException.</summary>
    public static ECDsa ReadLegacy(string path, string pin)
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

    private static DeviceKeyFile Load(string path)
    {
        DeviceKeyFile? file;
        try
        {
            file = JsonSerializer.Deserialize<DeviceKeyFile>(File.ReadAllBytes(path));
        }
        catch (JsonException)
        {
            file = null;
        }
        if (file is null || file.Format != DeviceKeyFile.CurrentFormat || file.Kdf != "argon2id" || file.Parallelism != AccessCardKdf.Parallelism
            || file.MemoryKiB is < 8 * 1024 or > AccessCardKdf.MaxMemoryKiB || file.Passes is < 1 or > AccessCardKdf.MaxPasses || file.Salt.Length != AccessCardKdf.SaltLength || file.Nonce.Length != 12 || file.Tag.Length != 16)
        {
            throw new CardNotReadyException($"the access card's key file {path} is damaged or of an unknown format; enroll this terminal again");
        }
        return file;
    }
}
