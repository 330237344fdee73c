using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Daiko.Home.Web;

/// <summary>
/// One-time login links for the owner's console. <c>daiko home console-link</c> adds a token's hash and
/// expiry to DIR/console-links (mode 0600) and prints the URL; the running server spends it on the first
/// GET. Only hashes are on disk, so reading the file gives no login; a token works once and not after
/// its expiry. The running console writes its base URL to DIR/console.url for the command to use.
/// </summary>
public static class ConsoleLinks
{
    private const string LinksFile = "console-links";
    private const string UrlFile = "console.url";
    private const string FingerprintFile = "console.cert-sha256";

    /// <summary>Makes a token valid for <paramref name="lifetime"/> and returns the login URL.</summary>
    public static (string Url, DateTimeOffset Expires) Issue(string directory, TimeSpan lifetime, TimeProvider? time = null)
    {
        var baseUrl = RunningConsole(directory) ?? throw new InvalidOperationException(
            "no console is running for this home: start it with 'daiko home serve --home DIR --console 127.0.0.1:8080'");
        var token = Base64Url(RandomNumberGenerator.GetBytes(32));
        var expires = (time ?? TimeProvider.System).GetUtcNow() + lifetime;
        Update(directory, time, lines => lines.Add($"{Hash(token)} {expires.ToUnixTimeSeconds()}"));
        return ($"{baseUrl.TrimEnd('/')}/login/{token}", expires);
    }

    /// <summary>
    /// True once for a valid, unexpired token; the token is gone afterwards whatever the answer. A token that is not in the
    /// file is refused without writing it or waiting for its lock (<see cref="MayHold"/>): <c>/login/</c> needs no session,
    /// and a flood of made-up tokens must not keep <c>console-link</c> from adding a real one.
    /// </summary>
    public static bool Spend(string directory, string token, TimeProvider? time = null)
    {
        if (token.Length is 0 or > 64) return false;
        var hash = Hash(token);
        if (!MayHold(directory, hash)) return false;
        var found = false;
        Update(directory, time, lines =>
        {
            var index = lines.FindIndex(l => CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(l.Split(' ')[0]), Encoding.ASCII.GetBytes(hash)));
            if (index < 0) return;
            found = true;
            lines.RemoveAt(index);
        });
        return found;
    }

    /// <summary>The hashes in a links file as last read, by the file's path, with what the file looked like then.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, HashesRead> Read = new();

    private sealed record HashesRead(DateTime Written, long Length, long ReadAt, HashSet<string> Hashes);

    /// <summary>
    /// Whether the links file may hold <paramref name="hash"/>: from the hashes last read while the file looks the same
    /// (written at the same time, same length) and was read within the last ten seconds, else from the file read again (shared:
    /// it waits for no writer and makes none wait long). A file that cannot be read now (the command is adding a link) is
    /// taken as not holding it: the link is refused, not spent, and works when opened again.
    /// </summary>
    private static bool MayHold(string directory, string hash)
    {
        var path = Path.Combine(directory, LinksFile);
        var file = new FileInfo(path);
        if (!file.Exists) return false;
        var (written, length) = (file.LastWriteTimeUtc, file.Length);
        if (Read.TryGetValue(path, out var read) && read.Written == written && read.Length == length
            && Environment.TickCount64 - read.ReadAt < 10_000)
        {
            return read.Hashes.Contains(hash);
        }
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            var hashes = new StreamReader(stream).ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => l.Split(' ')[0]).ToHashSet(StringComparer.Ordinal);
            Read[path] = new HashesRead(written, length, Environment.TickCount64, hashes);
            return hashes.Contains(hash);
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>The console's base URL as the running server recorded it, or null when none runs.</summary>
    public static string? RunningConsole(string directory)
    {
        var path = Path.Combine(directory, UrlFile);
        return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
    }

    /// <summary>
    /// Records the running console's base URL, and under TLS the SHA-256 fingerprint of the certificate it presents (null
    /// base URL: none runs any more).
    /// </summary>
    public static void RecordRunning(string directory, string? baseUrl, X509Certificate2? certificate = null)
    {
        var path = Path.Combine(directory, UrlFile);
        var fingerprint = Path.Combine(directory, FingerprintFile);
        File.Delete(fingerprint);
        if (baseUrl is null) File.Delete(path);
        else
        {
            if (certificate is not null) WritePrivate(fingerprint, Fingerprint(certificate) + "\n");
            WritePrivate(path, baseUrl + "\n");
        }
    }

    /// <summary>The SHA-256 fingerprint of the running console's certificate as browsers show it (AB:CD:…), or null (none, or plain HTTP).</summary>
    public static string? RunningFingerprint(string directory)
    {
        var path = Path.Combine(directory, FingerprintFile);
        return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
    }

    /// <summary>A certificate's SHA-256 fingerprint as browsers show it: upper-case hex pairs joined by colons.</summary>
    public static string Fingerprint(X509Certificate2 certificate) =>
        string.Join(':', certificate.GetCertHash(HashAlgorithmName.SHA256).Select(b => b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)));

    private static void Update(string directory, TimeProvider? time, Action<List<string>> change)
    {
        var path = Path.Combine(directory, LinksFile);
        var now = (time ?? TimeProvider.System).GetUtcNow().ToUnixTimeSeconds();
        // An exclusive open serializes the command and the server; a busy file is retried briefly.
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                using var stream = new FileStream(path, Options(FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
                var lines = new StreamReader(stream, leaveOpen: true).ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries)
                    .Where(l => l.Split(' ') is [_, var expires] && long.TryParse(expires, out var e) && e > now).ToList();
                change(lines);
                stream.SetLength(0);
                stream.Write(Encoding.ASCII.GetBytes(string.Concat(lines.Select(l => l + "\n"))));
                if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                return;
            }
            catch (IOException) when (attempt < 50)
            {
                Thread.Sleep(20);
            }
        }
    }

    private static void WritePrivate(string path, string text)
    {
        using var stream = new FileStream(path, Options(FileMode.Create, FileAccess.Write, FileShare.None));
        stream.Write(Encoding.UTF8.GetBytes(text));
    }

    /// <summary>Files made here are the owner's only (0600) from their creation on.</summary>
    private static FileStreamOptions Options(FileMode mode, FileAccess access, FileShare share)
    {
        var options = new FileStreamOptions { Mode = mode, Access = access, Share = share };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        return options;
    }

    private static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    internal static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
