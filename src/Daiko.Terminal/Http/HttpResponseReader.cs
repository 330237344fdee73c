using System.Text;

namespace Daiko.Terminal.Http;

/// <summary>A parsed HTTP/1.x response.</summary>
public sealed record HttpResponse(int StatusCode, IReadOnlyDictionary<string, string> Headers, byte[] Body);

/// <summary>
/// Reads one HTTP/1.x response from a stream (Content-Length, chunked, or until close): enough for
/// the CLI's one-shot fetches over a session, where HttpClient's pooling is not wanted.
/// </summary>
public static class HttpResponseReader
{
    public const int MaxHeaderBytes = 64 * 1024;
    public const int MaxBodyBytes = 64 * 1024 * 1024;

    public static async Task<HttpResponse> ReadBodyAsync(Stream stream, CancellationToken cancellationToken)
    {
        var buffer = new MemoryStream();
        var chunk = new byte[16384];
        int headerEnd;
        while ((headerEnd = IndexOf(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), "\r\n\r\n"u8)) < 0)
        {
            if (buffer.Length > MaxHeaderBytes) throw new InvalidDataException("the response headers exceed 64 KiB");
            var n = await stream.ReadAsync(chunk, cancellationToken);
            if (n == 0) throw new InvalidDataException("the connection closed before the response headers ended");
            buffer.Write(chunk, 0, n);
        }
        var all = buffer.ToArray();
        var head = Encoding.ASCII.GetString(all, 0, headerEnd).Split("\r\n");
        var status = head[0].Split(' ');
        if (status.Length < 2 || !status[0].StartsWith("HTTP/1.", StringComparison.Ordinal) || !int.TryParse(status[1], out var code))
            throw new InvalidDataException("the response does not start with an HTTP/1.x status line");
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in head.Skip(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0) headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
        }
        var rest = new MemoryStream();
        rest.Write(all, headerEnd + 4, all.Length - headerEnd - 4);
        if (headers.TryGetValue("Content-Length", out var lengthText) && long.TryParse(lengthText, out var length))
        {
            if (length > MaxBodyBytes) throw new InvalidDataException("the response body is too large");
            while (rest.Length < length)
            {
                var n = await stream.ReadAsync(chunk, cancellationToken);
                if (n == 0) throw new InvalidDataException("the connection closed before the response body ended");
                rest.Write(chunk, 0, n);
            }
            return new HttpResponse(code, headers, rest.ToArray()[..(int)length]);
        }
        while (true)
        {
            if (rest.Length > MaxBodyBytes) throw new InvalidDataException("the response body is too large");
            if (headers.TryGetValue("Transfer-Encoding", out var te) && te.Contains("chunked", StringComparison.OrdinalIgnoreCase)
                && TryDechunk(rest.ToArray(), out var dechunked))
            {
                return new HttpResponse(code, headers, dechunked);
            }
            int read;
            try { read = await stream.ReadAsync(chunk, cancellationToken); }
            catch (IOException) { read = 0; }
            if (read == 0) break;
            rest.Write(chunk, 0, read);
        }
        return new HttpResponse(code, headers, rest.ToArray());
    }

    private static bool TryDechunk(byte[] data, out byte[] body)
    {
        var output = new MemoryStream();
        var p = 0;
        body = [];
        while (true)
        {
            var lineEnd = IndexOf(data.AsSpan(p), "\r\n"u8);
            if (lineEnd < 0) return false;
            var sizeText = Encoding.ASCII.GetString(data, p, lineEnd).Split(';')[0].Trim();
            if (!int.TryParse(sizeText, System.Globalization.NumberStyles.HexNumber, null, out var size)) throw new InvalidDataException("malformed chunk size");
            p += lineEnd + 2;
            if (size == 0)
            {
                body = output.ToArray();
                return true;
            }
            if (p + size + 2 > data.Length) return false;
            output.Write(data, p, size);
            p += size + 2;
        }
    }

    private static int IndexOf(ReadOnlySpan<byte> haystack, ReadOnlySpan<byte> needle) => haystack.IndexOf(needle);
}
