using System.Buffers.Binary;
using System.Formats.Cbor;

namespace Daiko.Home.Control;

/// <summary>
/// One control-channel message: a CBOR map with a type ("t"), a request id ("id") and named fields.
/// Framed on the wire as a u32 big-endian length and the CBOR bytes (docs/protocol.md lists every
/// message). Field values are text, integers, booleans, byte strings or arrays of those.
/// </summary>
public sealed class ControlMessage
{
    public const int MaxFrameBytes = 1 << 20;

    private readonly Dictionary<string, object?> _fields = new(StringComparer.Ordinal);

    public ControlMessage(string type, long id = 0)
    {
        Type = type;
        Id = id;
    }

    public string Type { get; }

    public long Id { get; set; }

    public ControlMessage Set(string name, object? value)
    {
        _fields[name] = value;
        return this;
    }

    public bool Has(string name) => _fields.ContainsKey(name);

    public string GetString(string name) => _fields.TryGetValue(name, out var v) && v is string s ? s : throw Missing(name, "text");

    public string? GetStringOrNull(string name) => _fields.TryGetValue(name, out var v) ? v as string : null;

    public long GetInt(string name) => _fields.TryGetValue(name, out var v) && v is long l ? l : throw Missing(name, "integer");

    public bool GetBool(string name) => _fields.TryGetValue(name, out var v) && v is bool b ? b : throw Missing(name, "boolean");

    public byte[] GetBytes(string name) => _fields.TryGetValue(name, out var v) && v is byte[] b ? b : throw Missing(name, "bytes");

    public byte[]? GetBytesOrNull(string name) => _fields.TryGetValue(name, out var v) ? v as byte[] : null;

    public IReadOnlyList<object?> GetList(string name) => _fields.TryGetValue(name, out var v) && v is List<object?> l ? l : throw Missing(name, "array");

    private ProtocolException Missing(string name, string kind) => new($"message '{Type}' lacks {kind} field '{name}'");

    public byte[] Encode()
    {
        var w = new CborWriter();
        w.WriteStartMap(_fields.Count + 2);
        w.WriteTextString("t");
        w.WriteTextString(Type);
        w.WriteTextString("id");
        w.WriteInt64(Id);
        foreach (var (k, v) in _fields)
        {
            w.WriteTextString(k);
            WriteValue(w, v);
        }
        w.WriteEndMap();
        return w.Encode();
    }

    private static void WriteValue(CborWriter w, object? v)
    {
        switch (v)
        {
            case null: w.WriteNull(); break;
            case string s: w.WriteTextString(s); break;
            case bool b: w.WriteBoolean(b); break;
            case int i: w.WriteInt64(i); break;
            case long l: w.WriteInt64(l); break;
            case uint u: w.WriteInt64(u); break;
            case byte[] bytes: w.WriteByteString(bytes); break;
            case System.Collections.IEnumerable list:
                w.WriteStartArray(null);
                foreach (var item in list) WriteValue(w, item);
                w.WriteEndArray();
                break;
            default: throw new ArgumentException($"unsupported field type {v.GetType().Name}");
        }
    }

    public static ControlMessage Decode(ReadOnlyMemory<byte> cbor)
    {
        try
        {
            var r = new CborReader(cbor, CborConformanceMode.Strict);
            var count = r.ReadStartMap() ?? throw new ProtocolException("indefinite-length message map");
            string? type = null;
            long id = 0;
            var fields = new Dictionary<string, object?>(StringComparer.Ordinal);
            for (var i = 0; i < count; i++)
            {
                var key = r.ReadTextString();
                switch (key)
                {
                    case "t": type = r.ReadTextString(); break;
                    case "id": id = r.ReadInt64(); break;
                    default: fields[key] = ReadValue(r, 0); break;
                }
            }
            r.ReadEndMap();
            if (r.BytesRemaining != 0) throw new ProtocolException("trailing bytes after the message");
            var message = new ControlMessage(type ?? throw new ProtocolException("message without a type"), id);
            foreach (var (k, v) in fields) message._fields[k] = v;
            return message;
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or FormatException or OverflowException)
        {
            throw new ProtocolException($"malformed control message: {e.Message}", e);
        }
    }

    private static object? ReadValue(CborReader r, int depth)
    {
        if (depth > 4) throw new ProtocolException("control message nested too deeply");
        switch (r.PeekState())
        {
            case CborReaderState.TextString: return r.ReadTextString();
            case CborReaderState.ByteString: return r.ReadByteString();
            case CborReaderState.UnsignedInteger:
            case CborReaderState.NegativeInteger: return r.ReadInt64();
            case CborReaderState.Boolean: return r.ReadBoolean();
            case CborReaderState.Null: r.ReadNull(); return null;
            case CborReaderState.StartArray:
            {
                var list = new List<object?>();
                r.ReadStartArray();
                while (r.PeekState() != CborReaderState.EndArray)
                {
                    if (list.Count > 10_000) throw new ProtocolException("array too long");
                    list.Add(ReadValue(r, depth + 1));
                }
                r.ReadEndArray();
                return list;
            }
            default: throw new ProtocolException($"unsupported CBOR item {r.PeekState()}");
        }
    }

    /// <summary>Writes one frame.</summary>
    /// <summary>Writes one frame in a single write; returns the bytes written (prefix included).</summary>
    public static async ValueTask<int> WriteFrameAsync(Stream stream, ControlMessage message, CancellationToken cancellationToken)
    {
        var body = message.Encode();
        if (body.Length > MaxFrameBytes) throw new ProtocolException("control message exceeds 1 MiB");
        var frame = new byte[4 + body.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)body.Length);
        body.CopyTo(frame, 4);
        await stream.WriteAsync(frame, cancellationToken);
        await stream.FlushAsync(cancellationToken);
        return frame.Length;
    }

    /// <summary>Reads one frame; null at a clean end of stream.</summary>
    public static async ValueTask<ControlMessage?> ReadFrameAsync(Stream stream, CancellationToken cancellationToken) =>
        (await ReadCountedFrameAsync(stream, cancellationToken)).Message;

    /// <summary>Reads one frame and says how many bytes it took (prefix included); null at a clean end of stream.</summary>
    public static async ValueTask<(ControlMessage? Message, int Bytes)> ReadCountedFrameAsync(Stream stream, CancellationToken cancellationToken)
    {
        var header = new byte[4];
        var read = await stream.ReadAtLeastAsync(header, 4, throwOnEndOfStream: false, cancellationToken);
        if (read == 0) return (null, 0);
        if (read < 4) throw new ProtocolException("the control channel closed in the middle of a frame");
        var length = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (length > MaxFrameBytes) throw new ProtocolException($"control frame of {length} bytes exceeds the 1 MiB limit");
        var body = new byte[length];
        await stream.ReadExactlyAsync(body, cancellationToken);
        return (Decode(body), 4 + body.Length);
    }

    public override string ToString() => $"{Type}#{Id}";
}

/// <summary>The peer broke the control protocol.</summary>
public sealed class ProtocolException(string message, Exception? inner = null) : Exception(message, inner);
