using System.Text.Json;

namespace Daiko.Cards.Pins;

/// <summary>
/// A card's counters that survive restarts and <c>kill -9</c>, updated under an exclusive file lock
/// (threads and processes alike) and written atomically: temp file, fsync, rename, fsync of the
/// directory. A corrupt file never resets the counters: it reads as <paramref name="whenCorrupt"/>
/// (exhausted).
/// </summary>
internal sealed class CounterFile<T>(string path, Func<T> whenCorrupt) where T : class, new()
{
    private readonly string _lockPath = path + ".lock";

    public T Read()
    {
        if (!File.Exists(path)) return new T();
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllBytes(path)) ?? new T();
        }
        catch (JsonException)
        {
            return whenCorrupt();
        }
    }

    /// <summary>Runs <paramref name="action"/> holding the card's exclusive lock.</summary>
    public TResult Locked<TResult>(Func<TResult> action)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            FileStream? lockFile = null;
            try
            {
                lockFile = new FileStream(_lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(5);
                continue;
            }
            using (lockFile)
            {
                return action();
            }
        }
    }

    public void Write(T state)
    {
        var temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            JsonSerializer.Serialize(stream, state);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        CardFiles.FsyncDirectory(Path.GetDirectoryName(path)!);
    }
}

/// <summary>Durable file writes shared by the cards.</summary>
internal static class CardFiles
{
    internal static void FsyncDirectory(string directory)
    {
        try
        {
            using var handle = File.OpenHandle(directory, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.None);
            RandomAccess.FlushToDisk(handle);
        }
        catch (UnauthorizedAccessException) { }
        catch (IOException) { }
    }

    /// <summary>Writes a secret-bearing file 0600 and flushes it to disk.</summary>
    internal static void WritePrivate(string path, byte[] bytes)
    {
        using (var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
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
