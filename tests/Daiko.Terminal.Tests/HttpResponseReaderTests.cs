using System.Text;
using Daiko.Terminal.Http;
using Xunit;

namespace Daiko.Terminal.Tests;

/// <summary>A market's HTTP response as the terminal reads it: bounded by what arrives, not by what the market claims.</summary>
public sealed class HttpResponseReaderTests
{
    [Fact]
    public async Task ABodyOfItsContentLength_AndAChunkedOne_AreRead()
    {
        var plain = await HttpResponseReader.ReadBodyAsync(Wire("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), CancellationToken.None);
        var chunked = await HttpResponseReader.ReadBodyAsync(Wire("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: 1\r\n\r\n"), CancellationToken.None);

        Assert.Equal("hello", Encoding.ASCII.GetString(plain.Body));
        Assert.Equal("hello", Encoding.ASCII.GetString(chunked.Body));
    }

    [Fact]
    public async Task AContentLengthOfSixtyMegabytes_WithTenBytesBehindIt_TakesNoSixtyMegabytes()
    {
        var claim = Wire($"HTTP/1.1 200 OK\r\nContent-Length: {60 * 1024 * 1024}\r\n\r\n0123456789");
        var before = GC.GetAllocatedBytesForCurrentThread();

        var cut = await Assert.ThrowsAsync<InvalidDataException>(() => HttpResponseReader.ReadBodyAsync(claim, CancellationToken.None));

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains("closed before the response body ended", cut.Message, StringComparison.Ordinal);
        Assert.True(allocated < 4 * 1024 * 1024, $"{allocated} bytes allocated for a 10-byte body");
    }

    [Fact]
    public async Task OneByteChunks_WithLongExtensions_AreRefused_OnceTheirFramingPassesTheLargestBody()
    {
        var market = new TinyChunks();

        var refused = await Assert.ThrowsAsync<InvalidDataException>(() => HttpResponseReader.ReadBodyAsync(market, CancellationToken.None));

        Assert.Contains("chunk framing is far larger than its body", refused.Message, StringComparison.Ordinal);
        // A body of the largest size sent so would have cost about 4,000 times its bytes: the read stops near the bound.
        Assert.True(market.BytesRead < 2L * HttpResponseReader.MaxBodyBytes, $"{market.BytesRead} bytes read");
    }

    private static MemoryStream Wire(string text) => new(Encoding.ASCII.GetBytes(text));

    /// <summary>A market sending one-byte chunks, each behind a 4 KB size line, without end (a fake inside this unit test).</summary>
    private sealed class TinyChunks : Stream
    {
        private static readonly byte[] Head = Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        private static readonly byte[] Chunk = Encoding.ASCII.GetBytes("1;" + new string('e', 4000) + "\r\nx\r\n");
        private long _position;

        public long BytesRead => _position;

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = 0;
            while (n < count)
            {
                var source = _position < Head.Length ? Head : Chunk;
                var at = _position < Head.Length ? (int)_position : (int)((_position - Head.Length) % Chunk.Length);
                var take = Math.Min(count - n, source.Length - at);
                Array.Copy(source, at, buffer, offset + n, take);
                n += take;
                _position += take;
            }
            return n;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
