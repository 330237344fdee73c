using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Daiko.Cards;

/// <summary>card.json: the card's key type, its id and public keys (the TLS identity key and the purse key).</summary>
internal sealed record CardConfig(HomeCardKeyType KeyType, string CardId, byte[] PublicKeyInfo)
{
    /// <summary>The purse key's SubjectPublicKeyInfo; null on a card made before the purse key existed (until its next unlock).</summary>
    [JsonPropertyName("PurseKeyInfo")] public byte[]? PurseKeyInfo { get; init; }

    public static string PathOf(HomeCardOptions options) => Path.Combine(options.CardDirectory, "card.json");

    public static CardConfig ForKey(HomeCardKeyType keyType, byte[] spki, byte[]? purseKeyInfo) =>
        new(keyType, Convert.ToHexString(SHA256.HashData(spki)).ToLowerInvariant(), spki) { PurseKeyInfo = purseKeyInfo };

    public static CardConfig Load(HomeCardOptions options)
    {
        var path = PathOf(options);
        if (!File.Exists(path)) throw new FileNotFoundException($"no home card in {options.Directory}; run 'daiko home init' first");
        return JsonSerializer.Deserialize<CardConfig>(File.ReadAllText(path)) ?? throw new InvalidDataException("the card configuration is unreadable");
    }

    public void Save(HomeCardOptions options)
    {
        var path = PathOf(options);
        var temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this));
        File.Move(temp, path, overwrite: true);
    }
}

/// <summary>What the card holds that is public: its configuration and the user's certificate chain.</summary>
internal sealed class HomeCardKeys(HomeCardOptions options)
{
    private (DateTime, long) _configSeen = Stamp(CardConfig.PathOf(options));
    private (DateTime, long) _chainSeen = Stamp(Path.Combine(options.CardDirectory, "user.pem"));

    public CardConfig Config { get; set; } = CardConfig.Load(options);

    public IReadOnlyList<byte[]> Chain { get; private set; } = LoadChain(options);

    public string ChainPath => Path.Combine(options.CardDirectory, "user.pem");

    public void ReloadChain()
    {
        _chainSeen = Stamp(ChainPath);
        Chain = LoadChain(options);
    }

    /// <summary>
    /// Reloads card.json and the chain when another process (an owner command) rewrote them; returns
    /// whether the TLS identity key itself changed (a PKCS#12 import).
    /// </summary>
    public bool Refresh()
    {
        if (Stamp(ChainPath) != _chainSeen) ReloadChain();
        var configStamp = Stamp(CardConfig.PathOf(options));
        if (configStamp == _configSeen) return false;
        _configSeen = configStamp;
        var config = CardConfig.Load(options);
        var keyChanged = !config.PublicKeyInfo.AsSpan().SequenceEqual(Config.PublicKeyInfo);
        Config = config;
        return keyChanged;
    }

    private static (DateTime, long) Stamp(string path)
    {
        var info = new FileInfo(path);
        return info.Exists ? (info.LastWriteTimeUtc, info.Length) : (DateTime.MinValue, -1);
    }

    public static bool HasCertificate(HomeCardOptions options) => File.Exists(Path.Combine(options.CardDirectory, "user.pem"));

    private static List<byte[]> LoadChain(HomeCardOptions options)
    {
        var path = Path.Combine(options.CardDirectory, "user.pem");
        if (!File.Exists(path)) return [];
        var collection = new X509Certificate2Collection();
        collection.ImportFromPemFile(path);
        return collection.Select(c => c.RawData).ToList();
    }
}
