using System.Formats.Cbor;

namespace Daiko.Protocol.Wire;

/// <summary>Writes a message's named fields into the frame's CBOR map (the map's count is filled in by the frame).</summary>
public sealed class FieldWriter
{
    private readonly CborWriter _writer;

    internal FieldWriter(CborWriter writer) => _writer = writer;

    internal int Count { get; private set; }

    private CborWriter Key(string name)
    {
        Count++;
        _writer.WriteTextString(name);
        return _writer;
    }

    public void Text(string name, string value) => Key(name).WriteTextString(value);

    public void TextOrNull(string name, string? value)
    {
        var w = Key(name);
        if (value is null) w.WriteNull();
        else w.WriteTextString(value);
    }

    public void Int(string name, long value) => Key(name).WriteInt64(value);

    public void Bool(string name, bool value) => Key(name).WriteBoolean(value);

    public void Bytes(string name, ReadOnlySpan<byte> value) => Key(name).WriteByteString(value);

    /// <summary>An array whose items <paramref name="item"/> writes (each one CBOR item).</summary>
    public void List<T>(string name, IReadOnlyCollection<T> items, Action<CborWriter, T> item)
    {
        var w = Key(name);
        w.WriteStartArray(items.Count);
        foreach (var value in items) item(w, value);
        w.WriteEndArray();
    }

    public void TextList(string name, IReadOnlyCollection<string> items) => List(name, items, static (w, s) => w.WriteTextString(s));

    public void BytesList(string name, IReadOnlyCollection<byte[]> items) => List(name, items, static (w, b) => w.WriteByteString(b));
}
