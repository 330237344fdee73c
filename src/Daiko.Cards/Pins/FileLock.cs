using System.Runtime.InteropServices;

namespace Daiko.Cards.Pins;

/// <summary>
/// An exclusive flock(2) on a lock file, waited for in the kernel (no polling). The lock belongs to
/// the open file, so the kernel drops it when the holder closes it or dies (<c>kill -9</c> included).
/// .NET's own FileShare.None locking is the same flock, so older builds that open the file that way
/// exclude and are excluded alike.
/// </summary>
internal sealed class FileLock : IDisposable
{
    private const int LockExclusive = 2;
    private const int EINTR = 4;
    private const int OpenReadWriteCreate = 0x2 | 0x40 | 0x80000; // O_RDWR | O_CREAT | O_CLOEXEC (Linux)

    private readonly IDisposable _handle;

    private FileLock(IDisposable handle) => _handle = handle;

    public static FileLock Acquire(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            // Elsewhere the share mode is the lock; the in-process semaphore already serialises threads.
            return new FileLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
        }
        // Opened with open(2) itself: a FileStream would take its own non-blocking flock first.
        var fd = open(path, OpenReadWriteCreate, Convert.ToUInt32("600", 8));
        if (fd < 0) throw new IOException($"cannot open {path} (errno {Marshal.GetLastPInvokeError()})");
        var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        while (flock(fd, LockExclusive) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR) continue;
            handle.Dispose();
            throw new IOException($"cannot lock {path} (errno {errno})");
        }
        return new FileLock(handle);
    }

    public void Dispose() => _handle.Dispose();

    [DllImport("libc", SetLastError = true)]
    private static extern int flock(int fd, int operation);

    [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
    private static extern int open(string path, int flags, uint mode);
}
