using System.Runtime.InteropServices;
using System.Text.Json;

namespace Daiko.Cards.Pins;

/// <summary>
/// Where a card's persisted counters live. For a local token, a file beside the card
/// (<see cref="LocalCounterStore"/>); a hosted deployment with a network HSM can keep them in its
/// shared database instead, so that every node counts the same tries.
/// </summary>
public interface ICardCounterStore
{
    /// <summary>The stored state, or null when none was ever written.</summary>
    byte[]? Read();

    /// <summary>Runs <paramref name="action"/> holding the counters' exclusive lock (threads and processes alike).</summary>
    TResult Locked<TResult>(Func<TResult> action);

    /// <summary>Replaces the state durably and atomically (a crash leaves the old or the new state, never a mix).</summary>
    void Write(byte[] state);
}

/// <summary>
/// A card's counters in a local file that survives restarts and <c>kill -9</c>: written atomically
/// (temp file, fsync, rename, fsync of the directory) under an exclusive lock. Waiting for the lock
/// does not spin: threads of one process queue on a semaphore, processes on a blocking flock(2) of
/// PATH.lock, which the kernel releases when a holder dies.
/// </summary>
public sealed class LocalCounterStore(string path) : ICardCounterStore
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, SemaphoreSlim> InProcess = new(StringComparer.Ordinal);

    private readonly string _lockPath = Path.GetFullPath(path + ".lock");

    public byte[]? Read() => File.Exists(path) ? File.ReadAllBytes(path) : null;

    public TResult Locked<TResult>(Func<TResult> action)
    {
        var gate = InProcess.GetOrAdd(_lockPath, _ => new SemaphoreSlim(1, 1));
        if (!gate.Wait(TimeSpan.FromSeconds(30))) throw new IOException($"the card's counters at {path} stayed locked for 30 seconds");
        try
        {
            using var lockFile = FileLock.Acquire(_lockPath);
            return action();
        }
        finally
        {
            gate.Release();
        }
    }

    public void Write(byte[] state) => CardFiles.WritePrivate(path, state);
}

/// <summary>
/// The card's counters as JSON in an <see cref="ICardCounterStore"/>. A corrupt state never resets
/// the counters: it reads as <paramref name="whenCorrupt"/> (exhausted).
/// </summary>
internal sealed class CounterFile<T>(ICardCounterStore store, Func<T> whenCorrupt) where T : class, new()
{
    public CounterFile(string path, Func<T> whenCorrupt)
        : this(new LocalCounterStore(path), whenCorrupt)
    {
    }

    public T Read()
    {
        if (store.Read() is not { } bytes) return new T();
        try
        {
            return JsonSerializer.Deserialize<T>(bytes) ?? new T();
        }
        catch (JsonException)
        {
            return whenCorrupt();
        }
    }

    /// <summary>Runs <paramref name="action"/> holding the card's exclusive lock.</summary>
    public TResult Locked<TResult>(Func<TResult> action) => store.Locked(action);

    public void Write(T state) => store.Write(JsonSerializer.SerializeToUtf8Bytes(state));
}

/// <summary>Durable file writes shared by the cards (and the CLI's other secret-bearing files).</summary>
public static class CardFiles
{
    /// <summary>
    /// Flushes <paramref name="directory"/> itself to disk, so that a file renamed into it (or deleted from it) stays so
    /// after a power cut: the file's own fsync does not cover its name. Whether it was flushed (never on Windows, where
    /// a rename is made durable otherwise). .NET opens no directory as a file (it refused every one with "access denied",
    /// so this flushed nothing until it called open(2) and fsync(2) itself).
    /// </summary>
    internal static bool FsyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows()) return false;
        // O_RDONLY alone: a directory opens read-only on every Linux architecture (O_DIRECTORY's value differs between them).
        var fd = open(directory, 0);
        if (fd < 0) return false;
        try
        {
            while (true)
            {
                if (fsync(fd) == 0) return true;
                if (Marshal.GetLastPInvokeError() != EINTR) return false;
            }
        }
        finally
        {
            close(fd);
        }
    }

    private const int EINTR = 4;

    [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
    private static extern int open(string path, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern int fsync(int fd);

    [DllImport("libc")]
    private static extern int close(int fd);

    /// <summary>
    /// Writes a secret-bearing file 0600 (from its creation on) and flushes it to disk: beside it first, then renamed over
    /// it, so that a crash or a full disk in the middle leaves the file as it was, whole, never truncated (a device key
    /// file rewritten under a new PIN is the only copy of the key).
    /// </summary>
    public static void WritePrivate(string path, byte[] bytes)
    {
        var temp = NewPath(path);
        // A copy a write cut short left is wiped, and the new one made afresh: never written through a link planted at its name.
        if (new FileInfo(temp).LinkTarget is not null) File.Delete(temp);
        else if (File.Exists(temp)) Wipe(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            using (var stream = new FileStream(temp, options))
            {
                if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            // No second copy of a secret is left beside the file (a crash leaves one: WipeWithNew takes it too).
            try { if (File.Exists(temp)) Wipe(temp); } catch (IOException) { }
            throw;
        }
        FsyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Where <see cref="WritePrivate"/> writes a file before renaming it over <paramref name="path"/>.</summary>
    internal static string NewPath(string path) => path + ".new";

    /// <summary>Wipes <paramref name="path"/>, and a new copy of it that a write cut short left beside it.</summary>
    internal static void WipeWithNew(string path)
    {
        if (File.Exists(NewPath(path))) Wipe(NewPath(path));
        Wipe(path);
    }

    /// <summary>Overwrites a file with zeros, then deletes it.</summary>
    internal static void Wipe(string path)
    {
        var length = new FileInfo(path).Length;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            stream.Write(new byte[length]);
            stream.Flush(flushToDisk: true);
        }
        File.Delete(path);
        FsyncDirectory(Path.GetDirectoryName(path)!);
    }
}
