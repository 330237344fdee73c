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
        var total = LogLines.Capacity + 500;
        var log = new StderrLog(json, stderr);
        var logger = log.CreateLogger("Daiko.Home");

        // All of it from a request's thread while stderr takes nothing: were a line written in line,
        // the first would wait for stderr forever.
        await Task.Run(() =>
        {
            for (var i = 0; i < total; i++) logger.LogInformation("request {Number} served", i);
        }).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, stderr.Written.Length);

        stderr.Open();
        log.Dispose();

        var lines = Encoding.UTF8.GetString(stderr.Written.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var served = lines.Where(l => l.Contains(" served", StringComparison.Ordinal)).ToList();
        var notice = Assert.Single(lines, l => l.Contains("dropped", StringComparison.Ordinal));
        // The lines that were kept came out whole and in the order they were logged, starting with the first.
        Assert.True(served.Count >= LogLines.Capacity, $"{served.Count} lines written");
        for (var i = 0; i < served.Count; i++) Assert.Contains($"request {i} served", served[i], StringComparison.Ordinal);
        var dropped = total - served.Count;
        Assert.True(dropped > 0);
        if (json)
        {
            using var parsed = JsonDocument.Parse(notice);
            Assert.Equal("warning", parsed.RootElement.GetProperty("level").GetString());
            Assert.Equal("LogLinesDropped", parsed.RootElement.GetProperty("event").GetString());
            Assert.Equal(dropped, parsed.RootElement.GetProperty("fields").GetProperty("dropped").GetInt64());
            Assert.Equal(served.Count, lines.Count(l => JsonDocument.Parse(l).RootElement.GetProperty("category").GetString() == "Daiko.Home"));
        }
        else
        {
            Assert.Contains($"{dropped} log line(s) dropped", notice, StringComparison.Ordinal);
        }
    }

    /// <summary>Takes nothing until <see cref="Open"/>; keeps what it is then given.</summary>
    private sealed class ShutStream : Stream
    {
        private readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public MemoryStream Written { get; } = new();

        public void Open() => _open.TrySetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await _open.Task.WaitAsync(cancellationToken);
            lock (Written) Written.Write(buffer.Span);
        }

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
