namespace Daiko.Protocol;

/// <summary>
/// Enrollment codes carry three parts: a public id (4 characters) by which the home server finds the
/// code, a secret (60 bits) it stores only as a hash, and a pin part
/// (60 bits) that binds the home server's key to this code's secret, so that the terminal checks whom it
/// talks to before it reveals the id and secret. The pin part is keyed by the secret: a man in the middle
/// without the code cannot make a key that passes (an unkeyed prefix of the key's hash, as codes had before
/// 2026-12-06, was the same in every code of a home, so a key matching its 60 bits could be searched for
/// offline once and used against every later enrollment). Codes made before the public id (24 characters:
/// secret and pin part) are still read; codes made by a home server before the keyed pin part are refused
/// as not matching its key (make a new one).
/// </summary>
public static class EnrollmentCode
{
    private const string Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    /// <summary>The length of the public id in front of the secret.</summary>
    public const int PublicIdLength = 4;

    /// <summary>The length of the secret (60 bits of Crockford base32).</summary>
    public const int SecretLength = 12;

    /// <param name="secret">The part the terminal sends: the public id and the secret (or, for an old code, the secret alone).</param>
    public static string Compose(string secret, byte[] homeSpkiHash) => Group(Normalize(secret) + PinPart(secret, homeSpkiHash));

    /// <summary>Splits a code into what the terminal sends (public id and secret) and the home server's pin part.</summary>
    public static (string Secret, string Pin) Split(string code)
    {
        var normalized = Normalize(code);
        if (normalized.Length is not (PublicIdLength + SecretLength + 12 or SecretLength + 12))
        {
            throw new FormatException("an enrollment code has 28 letters and digits (7 groups of 4)");
        }
        return (normalized[..^12], normalized[^12..]);
    }

    /// <summary>A fresh public id and secret, as the terminal will send them.</summary>
    public static (string PublicId, string Secret) NewIdAndSecret() => (Random(PublicIdLength), Random(SecretLength));

    /// <summary>The public id and secret of what a terminal sent; no public id for a code made before it.</summary>
    public static (string? PublicId, string Secret)? Parse(string sent)
    {
        var normalized = Normalize(sent);
        return normalized.Length switch
        {
            PublicIdLength + SecretLength => (normalized[..PublicIdLength], normalized[PublicIdLength..]),
            SecretLength => (null, normalized),
            _ => null,
        };
    }

    private static string Random(int length)
    {
        var chars = new char[length];
        for (var i = 0; i < chars.Length; i++) chars[i] = Alphabet[System.Security.Cryptography.RandomNumberGenerator.GetInt32(Alphabet.Length)];
        return new string(chars);
    }

    /// <summary>Normalizes what a user typed (case, dashes, spaces).</summary>
    public static string Normalize(string code) => new(code.ToUpperInvariant().Where(char.IsLetterOrDigit).ToArray());

    /// <summary>
    /// The pin part for <paramref name="secret"/> (what the terminal sends: public id and secret) and the home server's key
    /// hash: the first 60 bits of HMAC-SHA256 keyed by the secret over a label and the key hash.
    /// </summary>
    public static string PinPart(string secret, byte[] homeSpkiHash)
    {
        byte[] message = [.. "daiko enrollment pin v2\0"u8, .. homeSpkiHash];
        var mac = System.Security.Cryptography.HMACSHA256.HashData(System.Text.Encoding.ASCII.GetBytes(Normalize(secret)), message);
        var chars = new char[12];
        ulong bits = 0;
        for (var i = 0; i < 8; i++) bits = (bits << 8) | mac[i];
        for (var i = 0; i < 12; i++) chars[i] = Alphabet[(int)((bits >> (64 - 5 * (i + 1))) & 31)];
        return new string(chars);
    }

    private static string Group(string s) => string.Join('-', Enumerable.Range(0, s.Length / 4).Select(i => s.Substring(i * 4, 4)));
}
