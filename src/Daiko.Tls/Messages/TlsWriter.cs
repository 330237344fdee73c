using System.Buffers.Binary;

namespace Daiko.Tls.Messages;

/// <summary>
/// Writes TLS structures into a growable buffer; vector lengths are back-filled when a vector ends,
/// so callers never compute lengths by hand.
/// </summary>
internal sealed class TlsWriter
{
    private byte[] _buffer;
    private int _length;

    public TlsWriter(int capacity = 256) => _buffer = new byte[capacity];

    public int Length => _length;

    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    public void Reset() => _length = 0;

    public byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

    public void WriteUInt8(byte v) => Reserve(1)[0] = v;

    public void WriteUInt16(ushort v) => BinaryPrimitives.WriteUInt16BigEndian(Reserve(2), v);

    public void WriteUInt24(int v)
    {
        var s = Reserve(3);
        s[0] = (byte)(v >> 16);
        s[1] = (byte)(v >> 8);
        s[2] = (byte)v;
    }

    public void WriteUInt32(uint v) => BinaryPrimitives.WriteUInt32BigEndian(Reserve(4), v);

    public void WriteBytes(ReadOnlySpan<byte> bytes) => bytes.CopyTo(Reserve(bytes.Length));

    public void WriteVector8(ReadOnlySpan<byte> bytes)
    {
        WriteUInt8(checked((byte)bytes.Length));
        WriteBytes(bytes);
    }

    public void WriteVector16(ReadOnlySpan<byte> bytes)
    {
        WriteUInt16(checked((ushort)bytes.Length));
        WriteBytes(bytes);
    }

    public void WriteVector24(ReadOnlySpan<byte> bytes)
    {
        WriteUInt24(bytes.Length);
        WriteBytes(bytes);
    }

    /// <summary>Starts a vector whose <paramref name="lengthBytes"/>-byte length is filled by <see cref="EndVector"/>.</summary>
    public int BeginVector(int lengthBytes)
    {
        var at = _length;
        Reserve(lengthBytes);
        return at | (lengthBytes << 28);
    }

    public void EndVector(int marker)
    {
        var at = marker & 0x0fffffff;
        var lengthBytes = marker >> 28;
        var length = _length - at - lengthBytes;
        if (length >= 1 << (8 * lengthBytes)) throw new InvalidOperationException("vector too long for its length prefix");
        for (var i = 0; i < lengthBytes; i++)
        {
            _buffer[at + i] = (byte)(length >> (8 * (lengthBytes - 1 - i)));
        }
    }

    /// <summary>Writes a handshake message header and a back-filled body length; returns the marker.</summary>
    public int BeginHandshake(HandshakeType type)
    {
        WriteUInt8((byte)type);
        return BeginVector(3);
    }

    public void Overwrite(int offset, ReadOnlySpan<byte> bytes) => bytes.CopyTo(_buffer.AsSpan(offset));

    private Span<byte> Reserve(int n)
    {
        if (_length + n > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + n));
        }
        var span = _buffer.AsSpan(_length, n);
        _length += n;
        return span;
    }
}
