using System.Text;
using System.Threading.Channels;

namespace Daiko.Cli;

/// <summary>
/// Log lines on their way to a stream (the server's stderr), written by a task of their own: whoever
/// logs only queues its line, so a request never waits for the terminal, pipe or journal behind
/// stderr, and no request holds a lock across that write. Lines queued meanwhile leave together in one write.
/// When the stream stops taking them and <see cref="Capacity"/> lines wait, further lines are dropped
/// and counted, and a line saying how many (<c>notice</c>) follows the next ones written.
/// </summary>
internal sealed class LogLines : IDisposable
{
    /// <summary>The most lines that wait for the stream.</summary>
    public const int Capacity = 10_000;

    private const int MostCharsAWrite = 64 * 1024;

    private readonly Stream _sink;
    private readonly Func<long, string> _notice;
    private readonly Channel<string> _queue = Channel.CreateBounded<string>(new BoundedChannelOptions(Capacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });
    private readonly Task _writing;
    private long _dropped;
    private bool _disposed;

    public LogLines(Stream sink, Func<long, string> notice)
    {
        _sink = sink;
        _notice = notice;
        _writing = Task.Run(WriteAsync);
    }

    /// <summary>
    /// Queues a line (without its line break); drops it if <see cref="Capacity"/> lines already wait.
    /// A line logged after <see cref="Dispose"/> (the last work of a stopping server) is written at once.
    /// </summary>
    public void Add(string line)
    {
        if (_queue.Writer.TryWrite(line)) return;
        if (Volatile.Read(ref _disposed)) Write(line + "\n");
        else Interlocked.Increment(ref _dropped);
    }

    private async Task WriteAsync()
    {
        var text = new StringBuilder();
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (text.Length < MostCharsAWrite && reader.TryRead(out var line)) text.Append(line).Append('\n');
            WriteOut(text);
        }
        WriteOut(text);
    }

    /// <summary>What was taken from the queue, and the count of lines dropped since the last write, in one write.</summary>
    private void WriteOut(StringBuilder text)
    {
        if (Interlocked.Exchange(ref _dropped, 0) is var dropped and > 0) text.Append(_notice(dropped)).Append('\n');
        if (text.Length == 0) return;
        var lines = text.ToString();
        text.Clear();
        Write(lines);
    }

    private void Write(string lines)
    {
        var bytes = Encoding.UTF8.GetBytes(lines);
        lock (_sink)
        {
            try
            {
                _sink.Write(bytes);
                _sink.Flush();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // stderr is gone or refuses us: the lines have nowhere to go, and the server goes on.
            }
        }
    }

    /// <summary>Lets the lines still queued out (waiting at most 2 s for the stream), then stops; later lines are written at once.</summary>
    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        _queue.Writer.TryComplete();
        _writing.Wait(TimeSpan.FromSeconds(2));
    }
}
