namespace Daiko.Home.Hosting;

/// <summary>A second home server on a home directory that one already serves.</summary>
public sealed class HomeAlreadyServingException(string directory)
    : InvalidOperationException($"another home server is already serving {directory}");

/// <summary>
/// The home directory's serve lock: an OS file lock (flock on DIR/serve.lock) held for the server's
/// life, so two home servers never act on one card and store at once. The OS drops it when the process
/// ends, however it ends.
/// </summary>
public sealed class ServeLock : IDisposable
{
    private readonly FileStream _file;

    private ServeLock(FileStream file) => _file = file;

    public static string PathOf(string directory) => Path.Combine(directory, "serve.lock");

    public static ServeLock Acquire(string directory)
    {
        try
        {
            // FileShare.None takes an exclusive, non-blocking flock on Unix.
            var file = new FileStream(PathOf(directory), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(PathOf(directory), UnixFileMode.UserRead | UnixFileMode.UserWrite);
            return new ServeLock(file);
        }
        catch (IOException e) when (e is not DirectoryNotFoundException and not FileNotFoundException)
        {
            throw new HomeAlreadyServingException(directory);
        }
    }

    public void Dispose() => _file.Dispose();
}
