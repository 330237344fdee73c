using System.Globalization;
using System.Text;

namespace Daiko.Terminal.Http;

/// <summary>A parsed HTTP/1.x response.</summary>
public sealed record HttpResponse(int StatusCode, IReadOnlyDictionary<string, string> Headers, byte[] Body);

/// <summary>
/// Reads one HTTP/1.x response from a stream (Content-Length, chunked, or until close): enough for
/// the CLI's one-shot fetches over a session, where HttpClient's pooling is not wanted. Every byte is
/// looked at a bounded number of times (linear in the response), headers and body have size limits,
/// and framing that ends early is an <see cref="InvalidDataException"/>. A body delimited by the end of
/// the connection is only as complete as that end: the stream reports an unclean end by throwing.
/// </summary>
public static class HttpResponseReader
{
    public const int MaxHeaderBytes = 64 * 1024;
    public const int MaxBodyBytes = 64 * 1024 * 1024;
    private const int MaxChunkLineBytes = 4096;

    public static async Task<HttpResponse> ReadBodyAsync(Stream stream, CancellationToken cancellationToken)
    {
        var input = new LineReader(stream);
        var statusLine = await input.ReadLineAsync(MaxHeaderBytes, "the response headers", cancellationToken);
        var status = statusLine.Split(' ');
        if (status.Length < 2 || !status[0].StartsWith("HTTP/1.", StringComparison.Ordinal) || !int.TryParse(status[1], NumberStyles.None, CultureInfo.InvariantCulture, out var code))
            throw new InvalidDataException("the response does not start with an HTTP/1.x status line");
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        while (true)
        {
            var line = await input.ReadLineAsync(MaxHeaderBytes - input.Consumed, "the response headers", cancellationToken);
            if (line.Length == 0) break;
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0) continue;
            var name = line[..colon].Trim();
            var value = line[(colon + 1)..].Trim();
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase) && headers.TryGetValue(name, out var earlier) && earlier != value)
                throw new InvalidDataException("the response has conflicting Content-Length headers");
            headers[name] = value;
        }
        byte[] body;
        if (headers.TryGetValue("Transfer-Encoding", out var te) && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            body = await ReadChunkedAsync(input, cancellationToken);
        }
        else if (headers.TryGetValue("Content-Length", out var lengthText))
        {
            if (!long.TryParse(lengthText, NumberStyles.None, CultureInfo.InvariantCulture, out var length)) throw new InvalidDataException("malformed Content-Length");
            if (length > MaxBodyBytes) throw new InvalidDataException("the response body is too large");
            // Grown as the bytes come, not taken at once on the strength of one header line.
            var output = new MemoryStream();
            await input.CopyExactlyAsync(output, (int)length, cancellationToken);
            body = output.ToArray();
        }
        else
        {
            body = await input.ReadToEndAsync(MaxBodyBytes, cancellationToken);
        }
        return new HttpResponse(code, headers, body);
    }

    private static async Task<byte[]> ReadChunkedAsync(LineReader input, CancellationToken cancellationToken)
    {
        var output = new MemoryStream();
        while (true)
        {
            var sizeLine = await input.ReadLineAsync(MaxChunkLineBytes, "a chunk size line", cancellationToken);
            var sizeText = sizeLine.Split(';')[0].Trim();
            if (sizeText.Length is 0 or > 8 || !int.TryParse(sizeText, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var size) || size < 0)
                throw new InvalidDataException("malformed chunk size");
            if (size == 0) break;
            if (output.Length + size > MaxBodyBytes) throw new InvalidDataException("the response body is too large");
            // Tiny chunks with long size lines could make a body of the largest size cost thousands of times its bytes.
            if (input.Consumed > MaxBodyBytes) throw new InvalidDataException("the response's chunk framing is far larger than its body");
            await input.CopyExactlyAsync(output, size, cancellationToken);
            if ((await input.ReadLineAsync(2, "the end of a chunk", cancellationToken)).Length != 0) throw new InvalidDataException("a chunk does not end with CRLF");
        }
        // Trailer fields, up to the empty line that ends the message.
        var trailers = 0;
        while ((await input.ReadLineAsync(MaxChunkLineBytes, "the chunked trailer", cancellationToken)).Length != 0)
        {
            if (++trailers > 100) throw new InvalidDataException("too many trailer fields");
        }
        return output.ToArray();
    }

    /// <summary>Buffered reading of CRLF lines and exact byte counts; each byte is scanned once.</summary>
    private sealed class LineReader(Stream stream)
    {
        private readonly byte[] _buffer = new byte[16384];
        private int _start;
        private int _end;

        /// <summary>Bytes of lines taken from the stream so far (to bound the header block, and a chunked body's framing).</summary>
        public int Consumed { get; private set; }

        private async Task<bool> FillAsync(CancellationToken cancellationToken)
        {
            if (_start == _end) _start = _end = 0;
            else if (_end == _buffer.Length)
            {
                _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
                _end -= _start;
                _start = 0;
            }
            var n = await stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
            _end += n;
            return n > 0;
        }

        public async Task<string> ReadLineAsync(int limit, string what, CancellationToken cancellationToken)
        {
            var line = new MemoryStream();
            while (true)
            {
                var newline = _buffer.AsSpan(_start, _end - _start).IndexOf((byte)'\n');
                var take = newline >= 0 ? newline + 1 : _end - _start;
                if (line.Length + take > limit + 2) throw new InvalidDataException($"{what} exceed {limit} bytes");
                line.Write(_buffer, _start, take);
                _start += take;
                Consumed += take;
                if (newline >= 0) break;
                if (!await FillAsync(cancellationToken)) throw new InvalidDataException($"the connection closed in the middle of {what}");
            }
            var bytes = line.GetBuffer().AsSpan(0, (int)line.Length);
            if (bytes.Length < 2 || bytes[^2] != '\r') throw new InvalidDataException($"{what} do not end with CRLF");
            return Encoding.ASCII.GetString(bytes[..^2]);
        }

        public async Task CopyExactlyAsync(MemoryStream output, int count, CancellationToken cancellationToken)
        {
            while (count > 0)
            {
                if (_start == _end && !await FillAsync(cancellationToken)) throw new InvalidDataException("the connection closed before the response body ended");
                var n = Math.Min(count, _end - _start);
                output.Write(_buffer, _start, n);
                _start += n;
                count -= n;
            }
        }

        public async Task<byte[]> ReadToEndAsync(int limit, CancellationToken cancellationToken)
        {
            var output = new MemoryStream();
            do
            {
                if (output.Length + (_end - _start) > limit) throw new InvalidDataException("the response body is too large");
                output.Write(_buffer, _start, _end - _start);
                _start = _end;
            }
            while (await FillAsync(cancellationToken));
            return output.ToArray();
        }
    }
}
