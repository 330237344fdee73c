namespace Daiko.Protocol;

/// <summary>
/// Enrollment codes carry two parts: a secret (60 bits) the home server stores only as a hash, and
/// the first 60 bits of the home server's key hash, so that the terminal checks whom it talks to before
/// it reveals the secret — a man in the middle without the code learns nothing and cannot pass.
/// </summary>
public static class EnrollmentCode
{
    private const string Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    public static string Compose(string secret, byte[] homeSpkiHash) => Group(Normalize(secret) + PinPart(homeSpkiHash));

    public static (string Secret, string Pin) Split(string code)
    {
        var normalized = Normalize(code);
        if (normalized.Length != 24) throw new FormatException("an enrollment code has 24 letters and digits (6 groups of 4)");
        return (normalized[..12], normalized[12..]);
    }

    /// <summary>Normalizes what a user typed (case, dashes, spaces).</summary>
    public static string Normalize(string code) => new(code.ToUpperInvariant().Where(char.IsLetterOrDigit).ToArray());

    public static string PinPart(byte[] homeSpkiHash)
    {
        var chars = new char[12];
        ulong bits = 0;
        for (var i = 0; i < 8; i++) bits = (bits << 8) | homeSpkiHash[i];
        for (var i = 0; i < 12; i++) chars[i] = Alphabet[(int)((bits >> (64 - 5 * (i + 1))) & 31)];
        return new string(chars);
    }

    private static string Group(string s) => string.Join('-', Enumerable.Range(0, s.Length / 4).Select(i => s.Substring(i * 4, 4)));
}
