using System.CommandLine;
using System.Runtime.InteropServices;

namespace Daiko.Cli;

/// <summary>
/// Home and terminal directories are private to their owner: every process starts with umask 077, so
/// what it creates is 0700 (directories) or 0600 (databases, keys, tokens, state); a directory made
/// looser by an older version or by hand is tightened when a command next uses it, and what changed is
/// said on stderr.
/// </summary>
internal static class PrivateFiles
{
    private const int MaxEntries = 100_000;

#pragma warning disable SYSLIB1054 // LibraryImport would need unsafe code for this one uint call
    [DllImport("libc", EntryPoint = "umask")]
    private static extern uint SetUmask(uint mask);
#pragma warning restore SYSLIB1054

    /// <summary>Sets umask 077 for this process and the processes it starts.</summary>
    public static void RestrictUmask()
    {
        if (!OperatingSystem.IsWindows()) SetUmask(0b000_111_111);
    }

    /// <summary>Tightens the directory given to the parsed command's --home or --terminal, if it exists.</summary>
    public static void TightenFor(ParseResult parse)
    {
        if (OperatingSystem.IsWindows()) return;
        foreach (var option in parse.CommandResult.Command.Options)
        {
            if (option is not Option<string> { Name: "--home" or "--terminal" } directoryOption) continue;
            if (parse.GetResult(directoryOption) is null || parse.GetValue(directoryOption) is not { Length: > 0 } directory) continue;
            if (!Directory.Exists(directory)) continue;
            if (OperatingSystem.IsLinux() && UnsafePlace(directory) is { } unsafePlace)
            {
                throw new CliInputException($"{directory} cannot be trusted: {unsafePlace}. Another user could change what daiko reads there (keys, state, " +
                    "and the PKCS#11 module it loads); use a directory of your own, in directories only you and root can write to");
            }
            var changes = Tighten(directory);
            if (changes.Count > 0)
            {
                Console.Error.WriteLine($"daiko: {directory} was readable by other users; tightened: {string.Join(", ", changes)}");
            }
        }
    }

    /// <summary>
    /// Why <paramref name="directory"/> is not this user's alone, or null: it, or a directory above it, belongs to
    /// another user (not root), or a directory above it may be written by others without the sticky bit (as
    /// /tmp has), so that they could rename it away and put their own in its place (OpenSSH's StrictModes rule).
    /// </summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    internal static string? UnsafePlace(string directory)
    {
        var me = GetEuid();
        var path = Path.GetFullPath(directory);
        for (var at = path; at is not null; at = Path.GetDirectoryName(at))
        {
            if (Stat(at) is not var (owner, mode)) return $"{at} could not be read";
            if (owner != me && owner != 0) return $"{at} belongs to user {owner}, not to you ({me})";
            const uint groupOrOtherWrite = 0b000_010_010, sticky = 0b001_000_000_000;
            if (at != path && (mode & groupOrOtherWrite) != 0 && (mode & sticky) == 0) return $"{at} may be written by other users";
        }
        return null;
    }

    /// <summary>The owner and mode of <paramref name="path"/> (following a link), from statx(2), whose layout is the same on every architecture.</summary>
    private static (uint Owner, uint Mode)? Stat(string path)
    {
        var buffer = new byte[256];
        // AT_FDCWD, no flags (a link is followed: what it points to is what is used), STATX_MODE | STATX_UID.
        if (StatX(-100, path, 0, 0x2 | 0x8, buffer) != 0) return null;
        // struct statx: stx_mask u32, stx_blksize u32, stx_attributes u64, stx_nlink u32, stx_uid u32 (20), stx_gid u32, stx_mode u16 (28).
        return (BitConverter.ToUInt32(buffer, 20), BitConverter.ToUInt16(buffer, 28));
    }

#pragma warning disable SYSLIB1054 // LibraryImport would need unsafe code for these calls
    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern int StatX(int directoryFd, string path, int flags, uint mask, byte[] buffer);

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEuid();
#pragma warning restore SYSLIB1054

    /// <summary>Removes group and other permissions from <paramref name="directory"/> and everything under it; returns what changed.</summary>
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public static IReadOnlyList<string> Tighten(string directory)
    {
        var changes = new List<string>();
        var root = new DirectoryInfo(directory);
        TightenOne(root, root.FullName, changes);
        var seen = 0;
        foreach (var entry in root.EnumerateFileSystemInfos("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint, IgnoreInaccessible = true }))
        {
            if (++seen > MaxEntries) break;
            TightenOne(entry, root.FullName, changes);
        }
        return changes;
    }

    /// <summary>
    /// Tightens one entry. An entry removed between listing and reading (a database's journal, an agent's
    /// temporary file) reads as mode -1 in .NET and is skipped; only the permission and special bits are
    /// ever written back.
    /// </summary>
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    internal static void TightenOne(FileSystemInfo entry, string root, List<string> changes)
    {
        const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
        const UnixFileMode settable = (UnixFileMode)0b111_111_111_111;
        UnixFileMode mode;
        try
        {
            if (entry.LinkTarget is not null) return;
            mode = entry.UnixFileMode;
        }
        catch (IOException)
        {
            return; // removed while we looked at it
        }
        if ((int)mode == -1 || (mode & ~settable) != 0) return;
        if ((mode & others) == 0) return;
        var tightened = mode & settable & ~others;
        try
        {
            File.SetUnixFileMode(entry.FullName, tightened);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return; // removed between reading its mode and tightening it
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            changes.Add($"{Name(entry, root)} could not be changed from {Octal(mode)} ({e.Message})");
            return;
        }
        changes.Add($"{Name(entry, root)} {Octal(mode)}→{Octal(tightened)}");
    }

    private static string Name(FileSystemInfo entry, string root) =>
        entry.FullName == root ? entry.FullName : Path.GetRelativePath(root, entry.FullName);

    private static string Octal(UnixFileMode mode) => Convert.ToString((int)mode & 0b111_111_111, 8).PadLeft(4, '0');
}
