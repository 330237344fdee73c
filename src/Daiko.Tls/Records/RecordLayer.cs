using System.Buffers;
using System.Buffers.Binary;

namespace Daiko.Tls.Records;

/// <summary>A complete handshake message: its type and its bytes including the 4-byte header.</summary>
internal readonly record struct HandshakeMessage(HandshakeType Type, byte[] Bytes)
{
    public ReadOnlySpan<byte> Body => Bytes.AsSpan(4);
}

/// <summary>
/// Reads and writes TLS records over a transport: framing and size limits, protection in each
/// direction, handshake message reassembly (messages may span records or share one), and byte
/// counting. Knows nothing about handshake states.
/// </summary>
internal sealed class RecordLayer : IDisposable
{
    private readonly Stream _transport;
    private readonly TlsCounters? _counters;
    private byte[] _in = ArrayPool<byte>.Shared.Rent(RecordProtection.HeaderLength + RecordProtection.MaxCiphertext + 64);
    private int _inStart;
    private int _inEnd;
    private byte[] _out = ArrayPool<byte>.Shared.Rent(RecordProtection.HeaderLength + RecordProtection.MaxCiphertext);
    // Records sealed and not yet written: a flight written without a flush goes out in one write.
    private int _outLength;
    private bool _pendingElicitsReply;
    private byte[] _handshake = new byte[1024];
    private int _handshakeLength;
    private readonly Queue<HandshakeMessage> _messages = new();
    private bool _awaitingReply;
    private bool _initialHelloSent;
    private int _recordsWithoutData;

    /// <summary>
    /// Records in a row that carry no data (change_cipher_spec, empty application data, and each
    /// post-handshake message: NewSessionTicket, KeyUpdate) before the connection gives up with
    /// unexpected_message, as Go's crypto/tls does.
    /// </summary>
    public const int MaxRecordsWithoutData = 16;

    public RecordLayer(Stream transport, TlsCounters? counters)
    {
        _transport = transport;
        _counters = counters;
    }

    public RecordProtection? ReadProtection { get; private set; }

    public RecordProtection? WriteProtection { get; private set; }

    /// <summary>Ignore change_cipher_spec records (middlebox compatibility) until the handshake ends.</summary>
    public bool AllowChangeCipherSpec { get; set; } = true;

    /// <summary>
    /// TLS 1.2: the server's next read keys, taken into use when its change_cipher_spec arrives (on a
    /// handshake message boundary). Without them a change_cipher_spec is unexpected unless
    /// <see cref="AllowChangeCipherSpec"/>.
    /// </summary>
    public RecordProtection? PendingReadProtection { get; set; }

    /// <summary>Padding added to every protected record (traffic analysis resistance).</summary>
    public int Padding { get; set; }

    public Stream Transport => _transport;

    /// <summary>Raw bytes read from the transport but not yet processed as records.</summary>
    public ReadOnlySpan<byte> UnprocessedTransportBytes => _in.AsSpan(_inStart, _inEnd - _inStart);

    public void InjectTransportBytes(ReadOnlySpan<byte> bytes)
    {
        EnsureRoom(bytes.Length);
        bytes.CopyTo(_in.AsSpan(_inEnd));
        _inEnd += bytes.Length;
    }

    public void SetReadProtection(RecordProtection protection)
    {
        if (_handshakeLength != 0 || _messages.Count != 0)
        {
            throw TlsException.Unexpected("handshake data across a key change");
        }
        ReadProtection?.Dispose();
        ReadProtection = protection;
    }

    public void ClearWriteProtection()
    {
        WriteProtection?.Dispose();
        WriteProtection = null;
    }

    public void SetWriteProtection(RecordProtection protection)
    {
        WriteProtection?.Dispose();
        WriteProtection = protection;
    }

    /// <summary>The client's last flight elicits the server's answer (TLS 1.2: its Finished): count a round trip.</summary>
    public void ExpectReply() => _awaitingReply = true;

    /// <summary>Counts a record that moved nothing forward; too many in a row is a flood.</summary>
    public void NoteRecordWithoutData(string what)
    {
        if (++_recordsWithoutData > MaxRecordsWithoutData)
        {
            throw TlsException.Unexpected($"{what}: more than {MaxRecordsWithoutData} records in a row without data");
        }
    }

    public void ResetRecordsWithoutData() => _recordsWithoutData = 0;

    /// <summary>The most content one record may carry, padding included: 2^14, or less when the server set a record_size_limit (RFC 8449).</summary>
    public int MaxPlaintextToSend { get; set; } = RecordProtection.MaxPlaintext;

    public bool HasBufferedHandshake => _messages.Count > 0 || _handshakeLength > 0;

    /// <summary>
    /// Writes <paramref name="data"/> as one or more records of <paramref name="type"/>. Without
    /// <paramref name="flush"/> the records wait in the output buffer for the next write that flushes
    /// (or for one that would not fit beside them), so that a flight of several records (TLS 1.2:
    /// Certificate, ClientKeyExchange, CertificateVerify, change_cipher_spec, Finished) leaves in one
    /// transport write rather than one a record. Bytes and round trips are counted once written.
    /// </summary>
    public async ValueTask WriteAsync(ContentType type, ReadOnlyMemory<byte> data, CancellationToken cancellationToken, bool flush = true)
    {
        do
        {
            var chunk = data[..Math.Min(data.Length, MaxPlaintextToSend)];
            data = data[chunk.Length..];
            var padding = WriteProtection is null ? 0 : Math.Min(Padding, MaxPlaintextToSend - chunk.Length);
            if (_outLength > 0 && _outLength + RecordProtection.HeaderLength + chunk.Length + padding + RecordProtection.MaxOverhead > _out.Length)
            {
                await WritePendingAsync(cancellationToken);
            }
            var record = _out.AsSpan(_outLength);
            int length;
            if (WriteProtection is null)
            {
                record[0] = (byte)type;
                record[1] = 0x03;
                // legacy_record_version: 0x0301 for the initial ClientHello only (RFC 8446 §5.1).
                record[2] = _initialHelloSent ? (byte)0x03 : (byte)0x01;
                _initialHelloSent = true;
                BinaryPrimitives.WriteUInt16BigEndian(record[3..], (ushort)chunk.Length);
                chunk.Span.CopyTo(record[RecordProtection.HeaderLength..]);
                length = RecordProtection.HeaderLength + chunk.Length;
            }
            else
            {
                length = WriteProtection.Seal(type, chunk.Span, padding, record);
            }
            _outLength += length;
            // A round trip is a flight that the server answers: a ClientHello or application data.
            // The client's Finished, Certificate and EndOfEarlyData elicit nothing.
            if (type == ContentType.ApplicationData || (type == ContentType.Handshake && chunk.Length > 0 && chunk.Span[0] == (byte)HandshakeType.ClientHello))
            {
                _pendingElicitsReply = true;
            }
        }
        while (!data.IsEmpty);
        if (flush)
        {
            await WritePendingAsync(cancellationToken);
            await _transport.FlushAsync(cancellationToken);
        }
    }

    /// <summary>Records sealed by writes without a flush, not yet on the transport.</summary>
    public bool HasPendingWrites => _outLength > 0;

    private async ValueTask WritePendingAsync(CancellationToken cancellationToken)
    {
        if (_outLength == 0) return;
        var length = _outLength;
        var elicitsReply = _pendingElicitsReply;
        _outLength = 0;
        _pendingElicitsReply = false;
        await _transport.WriteAsync(_out.AsMemory(0, length), cancellationToken);
        _counters?.AddBytesSent(length);
        if (elicitsReply) _awaitingReply = true;
    }

    /// <summary>
    /// Reads the next record. Returns its (inner) type and content; the content is valid until the
    /// next read. Returns null at a clean end of the transport between records.
    /// </summary>
    public async ValueTask<(ContentType Type, ReadOnlyMemory<byte> Content)?> ReadRecordAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            if (!await FillAsync(RecordProtection.HeaderLength, cancellationToken))
            {
                return null;
            }
            var header = _in.AsSpan(_inStart, RecordProtection.HeaderLength);
            var outerType = (ContentType)header[0];
            var length = BinaryPrimitives.ReadUInt16BigEndian(header[3..]);
            if (header[1] != 0x03)
            {
                throw TlsException.Decode("record header (version)");
            }
            if (outerType is not (ContentType.Handshake or ContentType.Alert or ContentType.ChangeCipherSpec or ContentType.ApplicationData))
            {
                throw TlsException.Unexpected($"record type {(byte)outerType}");
            }
            var tls12 = ReadProtection?.Suite.IsTls12 == true;
            var protectedRecord = ReadProtection is not null && (outerType == ContentType.ApplicationData || tls12);
            if (length > (protectedRecord ? RecordProtection.MaxCiphertext : RecordProtection.MaxPlaintext))
            {
                throw new TlsException(TlsError.RecordOverflow, AlertDescription.RecordOverflow, $"record of {length} bytes exceeds the limit");
            }
            if (!await FillAsync(RecordProtection.HeaderLength + length, cancellationToken))
            {
                throw new TlsException(TlsError.TransportClosed, AlertDescription.DecodeError, "the transport closed in the middle of a record");
            }
            var recordStart = _inStart;
            _inStart += RecordProtection.HeaderLength + length;
            _counters?.AddBytesReceived(RecordProtection.HeaderLength + length);
            var body = _in.AsMemory(recordStart + RecordProtection.HeaderLength, length);

            if (outerType == ContentType.ChangeCipherSpec && PendingReadProtection is { } pending && length == 1 && body.Span[0] == 1)
            {
                PendingReadProtection = null;
                SetReadProtection(pending);
                continue;
            }
            if (outerType == ContentType.ChangeCipherSpec)
            {
                if (!AllowChangeCipherSpec || length != 1 || body.Span[0] != 1)
                {
                    throw TlsException.Unexpected("change_cipher_spec");
                }
                NoteRecordWithoutData("change_cipher_spec");
                continue;
            }
            if (ReadProtection is null)
            {
                if (outerType == ContentType.ApplicationData)
                {
                    throw TlsException.Unexpected("application data before keys were established");
                }
                if (length == 0 && outerType != ContentType.ApplicationData)
                {
                    throw TlsException.Decode("empty record");
                }
                return (outerType, body);
            }
            if (outerType != ContentType.ApplicationData && !tls12)
            {
                // Once protection is on, only protected records count: a plaintext alert (a forged
                // close_notify above all) could come from anyone on the path (RFC 8446 §5).
                throw TlsException.Unexpected($"unprotected {outerType} record after keys were established");
            }
            var (innerType, contentLength) = ReadProtection.Open(_in.AsSpan(recordStart, RecordProtection.HeaderLength), body.Span);
            if (contentLength == 0 && innerType != ContentType.ApplicationData)
            {
                throw TlsException.Decode("empty record");
            }
            if (contentLength == 0)
            {
                // Empty application data is legal but says nothing: skip it, within the flood limit.
                NoteRecordWithoutData("empty application data");
                continue;
            }
            return (innerType, body[..contentLength]);
        }
    }

    /// <summary>Adds handshake record content to the reassembly buffer and queues complete messages.</summary>
    public void AddHandshakeData(ReadOnlySpan<byte> content)
    {
        if (_handshakeLength + content.Length > _handshake.Length)
        {
            Array.Resize(ref _handshake, Math.Max(_handshake.Length * 2, _handshakeLength + content.Length));
        }
        content.CopyTo(_handshake.AsSpan(_handshakeLength));
        _handshakeLength += content.Length;
        var offset = 0;
        while (_handshakeLength - offset >= 4)
        {
            var bodyLength = (_handshake[offset + 1] << 16) | (_handshake[offset + 2] << 8) | _handshake[offset + 3];
            if (bodyLength > 1 << 17)
            {
                throw TlsException.Decode("handshake message larger than 128 KiB");
            }
            if (_handshakeLength - offset < 4 + bodyLength) break;
            _messages.Enqueue(new HandshakeMessage((HandshakeType)_handshake[offset], _handshake.AsSpan(offset, 4 + bodyLength).ToArray()));
            offset += 4 + bodyLength;
        }
        if (offset > 0)
        {
            _handshake.AsSpan(offset, _handshakeLength - offset).CopyTo(_handshake);
            _handshakeLength -= offset;
        }
    }

    public bool TryDequeueHandshake(out HandshakeMessage message) => _messages.TryDequeue(out message);

    /// <summary>Reads records until a complete handshake message is available (during the handshake).</summary>
    public async ValueTask<HandshakeMessage> ReadHandshakeAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_messages.TryDequeue(out var message)) return message;
            var record = await ReadRecordAsync(cancellationToken)
                ?? throw new TlsException(TlsError.TransportClosed, AlertDescription.HandshakeFailure, "the server closed the connection during the handshake");
            switch (record.Type)
            {
                case ContentType.Handshake:
                    ResetRecordsWithoutData();
                    AddHandshakeData(record.Content.Span);
                    break;
                case ContentType.Alert:
                    throw AlertReceived(record.Content.Span);
                default:
                    throw TlsException.Unexpected($"{record.Type} record during the handshake");
            }
        }
    }

    public static TlsException AlertReceived(ReadOnlySpan<byte> alert)
    {
        if (alert.Length != 2) return TlsException.Decode("alert");
        var description = (AlertDescription)alert[1];
        return new TlsException(TlsError.PeerAlert, description, $"the server sent alert {description}", sentByPeer: true);
    }

    public async ValueTask SendAlertAsync(AlertDescription description, CancellationToken cancellationToken)
    {
        byte level = description is AlertDescription.CloseNotify or AlertDescription.UserCanceled or AlertDescription.NoRenegotiation ? (byte)1 : (byte)2;
        await WriteAsync(ContentType.Alert, new byte[] { level, (byte)description }, cancellationToken);
    }

    private async ValueTask<bool> FillAsync(int needed, CancellationToken cancellationToken)
    {
        while (_inEnd - _inStart < needed)
        {
            if (_inStart > 0 && _inStart == _inEnd)
            {
                _inStart = _inEnd = 0;
            }
            EnsureRoom(needed - (_inEnd - _inStart));
            if (_awaitingReply)
            {
                // The client sent something and now waits for the server: one round trip.
                _counters?.AddRoundTrip();
                _awaitingReply = false;
            }
            var n = await _transport.ReadAsync(_in.AsMemory(_inEnd), cancellationToken);
            if (n == 0)
            {
                if (_inEnd - _inStart == 0) return false;
                throw new TlsException(TlsError.TransportClosed, AlertDescription.DecodeError, "the transport closed in the middle of a record");
            }
            _inEnd += n;
        }
        return true;
    }

    private void EnsureRoom(int extra)
    {
        if (_inEnd + extra <= _in.Length) return;
        var pending = _inEnd - _inStart;
        if (pending + extra <= _in.Length)
        {
            _in.AsSpan(_inStart, pending).CopyTo(_in);
        }
        else
        {
            var bigger = ArrayPool<byte>.Shared.Rent(pending + extra);
            _in.AsSpan(_inStart, pending).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_in, clearArray: true);
            _in = bigger;
        }
        _inStart = 0;
        _inEnd = pending;
    }

    public void Dispose()
    {
        PendingReadProtection?.Dispose();
        ReadProtection?.Dispose();
        WriteProtection?.Dispose();
        ArrayPool<byte>.Shared.Return(_in, clearArray: true);
        _in = [];
        ArrayPool<byte>.Shared.Return(_out, clearArray: true);
        _out = [];
        _outLength = 0;
    }
}
