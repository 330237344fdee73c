using System.Formats.Cbor;

namespace Daiko.Protocol.Wire;

/// <summary>
/// The named fields of one received message, each kept as its encoded CBOR item until the message's
/// decoder asks for it with the type and range it expects. Anything else is a
/// <see cref="ProtocolException"/> that names the field, answered with <c>bad-request</c>. When the
/// frame ended early (<see cref="Truncated"/>), the first field the decoder misses is the one named.
/// </summary>
public sealed class FieldReader
{
    private readonly Dictionary<string, ReadOnlyMemory<byte>> _fields;

    internal FieldReader(string type, Dictionary<string, ReadOnlyMemory<byte>> fields, bool truncated)
    {
        Type = type;
        _fields = fields;
        Truncated = truncated;
    }

    public string Type { get; }

    /// <summary>The frame's map ended before all its entries were read.</summary>
    public bool Truncated { get; }

    public bool Has(string name) => _fields.ContainsKey(name);

    private ProtocolException Bad(string name, string expected) =>
        new(Truncated && !_fields.ContainsKey(name)
            ? $"the '{Type}' message ends before its field '{name}'"
            : $"field '{name}' of '{Type}' must be {expected}", name);

    private CborReader Item(string name, string expected) =>
        _fields.TryGetValue(name, out var raw) ? new CborReader(raw, CborConformanceMode.Strict) : throw Bad(name, expected);

    private T Read<T>(string name, string expected, Func<CborReader, T> read)
    {
        var r = Item(name, expected);
        try
        {
            return read(r);
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or OverflowException or FormatException or ArgumentException)
        {
            throw Bad(name, expected);
        }
    }

    private bool IsNull(string name) => !_fields.TryGetValue(name, out var raw) || new CborReader(raw).PeekState() == CborReaderState.Null;

    public string Text(string name, int maxLength = ControlProtocol.MaxTextLength, bool allowEmpty = true)
    {
        var expected = $"text of at most {maxLength} characters";
        var value = Read(name, expected, r => r.ReadTextString());
        if (value.Length > maxLength || (!allowEmpty && value.Length == 0)) throw Bad(name, allowEmpty ? expected : "non-empty " + expected);
        return value;
    }

    /// <summary>An optional text field: absent or null is null.</summary>
    public string? TextOrNull(string name, int maxLength = ControlProtocol.MaxTextLength) =>
        IsNull(name) && !(Truncated && !Has(name)) ? null : Text(name, maxLength);

    public long Int(string name, long min = long.MinValue, long max = long.MaxValue)
    {
        var expected = min == long.MinValue && max == long.MaxValue ? "an integer" : $"an integer from {min} to {max}";
        var value = Read(name, expected, r => r.ReadInt64());
        if (value < min || value > max) throw Bad(name, expected);
        return value;
    }

    public int Int32(string name, int min = int.MinValue, int max = int.MaxValue) => (int)Int(name, min, max);

    /// <summary>An optional integer field: absent is <paramref name="fallback"/>.</summary>
    public long IntOr(string name, long fallback, long min = long.MinValue, long max = long.MaxValue) =>
        Has(name) || Truncated ? Int(name, min, max) : fallback;

    public int? Int32OrNull(string name, int min = int.MinValue, int max = int.MaxValue) =>
        IsNull(name) && !(Truncated && !Has(name)) ? null : Int32(name, min, max);

    public bool Bool(string name) => Read(name, "a boolean", r => r.ReadBoolean());

    /// <summary>An optional boolean field: absent is <paramref name="fallback"/>.</summary>
    public bool BoolOr(string name, bool fallback) => Has(name) || Truncated ? Bool(name) : fallback;

    public byte[] Bytes(string name, int maxLength)
    {
        var expected = $"bytes (at most {maxLength})";
        var value = Read(name, expected, r => r.ReadByteString());
        if (value.Length > maxLength) throw Bad(name, expected);
        return value;
    }

    /// <summary>A definite-length array of at most <paramref name="maxItems"/> items, each read by <paramref name="item"/>.</summary>
    public IReadOnlyList<T> List<T>(string name, int maxItems, string itemDescription, Func<CborReader, T> item)
    {
        var expected = $"an array of at most {maxItems} {itemDescription}";
        return Read(name, expected, r =>
        {
            var count = r.ReadStartArray() ?? throw new FormatException("indefinite array");
            if (count > maxItems) throw new FormatException("too many items");
            var items = new List<T>(count);
            for (var i = 0; i < count; i++) items.Add(item(r));
            r.ReadEndArray();
            return items;
        });
    }

    public IReadOnlyList<string> TextList(string name, int maxItems = ControlProtocol.MaxListItems, int maxLength = ControlProtocol.MaxTextLength) =>
        List(name, maxItems, "text items", r => ReadText(r, maxLength));

    public IReadOnlyList<byte[]> BytesList(string name, int maxItems, int maxLength) =>
        List(name, maxItems, "byte strings", r => ReadBytes(r, maxLength));

    /// <summary>One value of an enumeration given by its wire names.</summary>
    public T Choice<T>(string name, IReadOnlyDictionary<string, T> choices)
    {
        var expected = "one of " + string.Join(", ", choices.Keys);
        var value = Read(name, expected, r => r.ReadTextString());
        return choices.TryGetValue(value, out var choice) ? choice : throw Bad(name, expected);
    }

    /// <summary>A byte string decoded by <paramref name="decode"/>, which throws FormatException for bad content.</summary>
    public T Embedded<T>(string name, int maxLength, string description, Func<byte[], T> decode)
    {
        var bytes = Bytes(name, maxLength);
        try
        {
            return decode(bytes);
        }
        catch (FormatException)
        {
            throw Bad(name, description);
        }
    }

    internal static string ReadText(CborReader r, int maxLength)
    {
        var s = r.ReadTextString();
        return s.Length <= maxLength ? s : throw new FormatException("text too long");
    }

    internal static byte[] ReadBytes(CborReader r, int maxLength)
    {
        var b = r.ReadByteString();
        return b.Length <= maxLength ? b : throw new FormatException("bytes too long");
    }

    internal static string? ReadTextOrNull(CborReader r, int maxLength)
    {
        if (r.PeekState() != CborReaderState.Null) return ReadText(r, maxLength);
        r.ReadNull();
        return null;
    }

    internal static void ExpectArray(CborReader r, int count)
    {
        if (r.ReadStartArray() != count) throw new FormatException($"expected an array of {count}");
    }
}
