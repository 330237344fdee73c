using System.Text;
using System.Text.Json;
using Daiko.Cli;
using Microsoft.Extensions.Logging;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// The server's log on stderr never holds up the one who logs: when stderr takes nothing (a pipe
/// nobody reads, a stuck journal) a request's log line is queued and the request goes on; beyond
/// the queue's capacity lines are dropped, counted and reported once stderr takes lines again; and
/// disposal lets the queued lines out, in order. (A unit test of the log writer: stderr here is a
/// stream the test holds shut.)
/// </summary>
public sealed class StderrLogTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AStderrThatTakesNothing_NeverHoldsUpTheLogger_AndWhatDidNotFitIsCountedOnceItMoves(bool json)
    {
        var stderr = new ShutStream();
        using var log = new StderrLog(json, stderr);
        var logger = log.CreateLogger("Daiko.Home");
        const int beyond = 500;
        try
        {
            // The first line is taken by the writer, which then waits on stderr; the queue fills behind it.
            logger.LogInformation("request {Number} served", 0);
            await stderr.Entered.WaitAsync(TimeSpan.FromSeconds(30));
            // The rest from a request's thread while stderr takes nothing: were a line written in line,
            // the first of them would wait for stderr forever.
            await Task.Run(() =>
            {
                for (var i = 1; i <= LogLines.Capacity + beyond; i++) logger.LogInformation("request {Number} served", i);
            }).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, stderr.Length);
        }
        finally
        {
            stderr.Open();
        }
        log.Dispose();
        logger.LogInformation("a line after the log was disposed");

        var lines = stderr.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var served = lines.Where(l => l.Contains(" served", StringComparison.Ordinal)).ToList();
        // The first line and a full queue behind it, whole and in the order they were logged; the rest dropped and counted once.
        Assert.Equal(1 + LogLines.Capacity, served.Count);
        for (var i = 0; i < served.Count; i++) Assert.Contains($"request {i} served", served[i], StringComparison.Ordinal);
        var notice = Assert.Single(lines, l => l.Contains("dropped", StringComparison.Ordinal));
        Assert.Contains("a line after the log was disposed", lines[^1], StringComparison.Ordinal);
        if (json)
        {
            using var parsed = JsonDocument.Parse(notice);
            Assert.Equal("warning", parsed.RootElement.GetProperty("level").GetString());
            Assert.Equal("LogLinesDropped", parsed.RootElement.GetProperty("event").GetString());
            Assert.Equal(beyond, parsed.RootElement.GetProperty("fields").GetProperty("dropped").GetInt64());
            foreach (var line in lines)
            {
                using var each = JsonDocument.Parse(line);
            }
        }
        else
        {
            Assert.Contains($"{beyond} log line(s) dropped", notice, StringComparison.Ordinal);
        }
    }

    /// <summary>Takes nothing until <see cref="Open"/>; keeps what it is then given.</summary>
    private sealed class ShutStream : Stream
    {
        private readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly MemoryStream _written = new();

        /// <summary>Completes when the first write arrives (and waits).</summary>
        public Task Entered => _entered.Task;

        public string Text
        {
            get
            {
                lock (_written) return Encoding.UTF8.GetString(_written.ToArray());
            }
        }

        public void Open() => _open.TrySetResult();

        public override void Write(byte[] buffer, int offset, int count)
        {
            _entered.TrySetResult();
            _open.Task.Wait();
            lock (_written) _written.Write(buffer, offset, count);
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length
        {
            get
            {
                lock (_written) return _written.Length;
            }
        }
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
