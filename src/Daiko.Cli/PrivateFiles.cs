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
            var changes = Tighten(directory);
            if (changes.Count > 0)
            {
                Console.Error.WriteLine($"daiko: {directory} was readable by other users; tightened: {string.Join(", ", changes)}");
            }
        }
    }

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
