using System.Buffers.Binary;

namespace Daiko.Tls.Messages;

/// <summary>
/// Reads TLS presentation-language structures from a span. Every read checks its length; a short or
/// over-long structure is a decode_error. Vectors return a sub-reader that must be consumed exactly.
/// </summary>
internal ref struct TlsReader
{
    private ReadOnlySpan<byte> _data;
    private readonly string _what;

    public TlsReader(ReadOnlySpan<byte> data, string what)
    {
        _data = data;
        _what = what;
    }

    public readonly int Remaining => _data.Length;

    public readonly bool IsEmpty => _data.IsEmpty;

    public byte ReadUInt8()
    {
        Need(1);
        var v = _data[0];
        _data = _data[1..];
        return v;
    }

    public ushort ReadUInt16()
    {
        Need(2);
        var v = BinaryPrimitives.ReadUInt16BigEndian(_data);
        _data = _data[2..];
        return v;
    }

    public int ReadUInt24()
    {
        Need(3);
        var v = (_data[0] << 16) | (_data[1] << 8) | _data[2];
        _data = _data[3..];
        return v;
    }

    public uint ReadUInt32()
    {
        Need(4);
        var v = BinaryPrimitives.ReadUInt32BigEndian(_data);
        _data = _data[4..];
        return v;
    }

    public ReadOnlySpan<byte> ReadBytes(int length)
    {
        Need(length);
        var v = _data[..length];
        _data = _data[length..];
        return v;
    }

    public ReadOnlySpan<byte> ReadVector8(int min = 0) => CheckedVector(ReadUInt8(), min);

    public ReadOnlySpan<byte> ReadVector16(int min = 0) => CheckedVector(ReadUInt16(), min);

    public ReadOnlySpan<byte> ReadVector24(int min = 0) => CheckedVector(ReadUInt24(), min);

    public TlsReader ReadSub8(int min = 0) => new(ReadVector8(min), _what);

    public TlsReader ReadSub16(int min = 0) => new(ReadVector16(min), _what);

    public TlsReader ReadSub24(int min = 0) => new(ReadVector24(min), _what);

    /// <summary>Rejects trailing bytes.</summary>
    public readonly void EnsureEnd()
    {
        if (!_data.IsEmpty) throw TlsException.Decode(_what + " (trailing bytes)");
    }

    private ReadOnlySpan<byte> CheckedVector(int length, int min)
    {
        if (length < min) throw TlsException.Decode(_what + " (vector too short)");
        return ReadBytes(length);
    }

    private readonly void Need(int n)
    {
        if (n > _data.Length) throw TlsException.Decode(_what + " (truncated)");
    }
}
