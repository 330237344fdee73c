using System.Buffers;
using System.Buffers.Binary;
using System.Formats.Cbor;
using Daiko.Protocol.Messages;

namespace Daiko.Protocol.Wire;

/// <summary>A message with the id that matches a reply to its request (0 for notifications and refusals of a whole connection).</summary>
public readonly record struct ControlEnvelope(long Id, ControlMessage Message);

/// <summary>
/// Framing: a u32 big-endian length (at most <see cref="ControlProtocol.MaxFrameBytes"/>) and a CBOR
/// map with <c>t</c> (type), <c>re</c> (true on replies), <c>id</c> and the message's fields. Frames
/// are built and read in pooled buffers that are cleared on return (they carry PINs and secrets).
/// </summary>
public static class ControlFrame
{
    private delegate ControlMessage Decoder(FieldReader reader);

    private static readonly Dictionary<(string Type, bool Reply), Decoder> Decoders = new()
    {
        [(EnrollRequest.WireType, false)] = EnrollRequest.Read,
        [(EnrolledReply.WireType, true)] = EnrolledReply.Read,
        [(UnlockRequest.WireType, false)] = UnlockRequest.Read,
        [(UnlockedReply.WireType, true)] = UnlockedReply.Read,
        [(LockRequest.WireType, false)] = LockRequest.Read,
        [(LockedReply.WireType, true)] = LockedReply.Read,
        [(CardStatusRequest.WireType, false)] = CardStatusRequest.Read,
        [(CardStatusReply.WireType, true)] = CardStatusReply.Read,
        [(DelegateRequest.WireType, false)] = DelegateRequest.Read,
        [(TicketReply.WireType, true)] = TicketReply.Read,
        [(SecretsReply.WireType, true)] = SecretsReply.Read,
        [(RelayReply.WireType, true)] = RelayReply.Read,
        [(AssistReply.WireType, true)] = AssistReply.Read,
        [(PrefetchRequest.WireType, false)] = PrefetchRequest.Read,
        [(PrefetchedReply.WireType, true)] = PrefetchedReply.Read,
        [(SignRequest.WireType, false)] = SignRequest.Read,
        [(SignatureReply.WireType, true)] = SignatureReply.Read,
        [(VerifyChainRequest.WireType, false)] = VerifyChainRequest.Read,
        [(VerdictReply.WireType, true)] = VerdictReply.Read,
        [(RelayData.WireType, false)] = RelayData.Read,
        [(RelayClose.WireType, false)] = RelayClose.Read,
        [(RelayWindow.WireType, false)] = RelayWindow.Read,
        [(ErrorReply.WireType, true)] = ErrorReply.Read,
        [(WalletBalanceRequest.WireType, false)] = WalletBalanceRequest.Read,
        [(WalletBalanceReply.WireType, true)] = WalletBalanceReply.Read,
        [(WalletHistoryRequest.WireType, false)] = WalletHistoryRequest.Read,
        [(WalletHistoryReply.WireType, true)] = WalletHistoryReply.Read,
        [(WalletPayRequest.WireType, false)] = WalletPayRequest.Read,
        [(WalletPaymentReply.WireType, true)] = WalletPaymentReply.Read,
        [(WalletRefillRequest.WireType, false)] = WalletRefillRequest.Read,
        [(WalletRefillAckReply.WireType, true)] = WalletRefillAckReply.Read,
        [(WalletCancelRequest.WireType, false)] = WalletCancelRequest.Read,
        [(WalletCancellationReply.WireType, true)] = WalletCancellationReply.Read,
        [(WalletConfirmRequest.WireType, false)] = WalletConfirmRequest.Read,
        [(WalletCreditedReply.WireType, true)] = WalletCreditedReply.Read,
        [(WalletMailRequest.WireType, false)] = WalletMailRequest.Read,
        [(WalletMailedReply.WireType, true)] = WalletMailedReply.Read,
        [(ApplianceListRequest.WireType, false)] = ApplianceListRequest.Read,
        [(AppliancesReply.WireType, true)] = AppliancesReply.Read,
        [(ApplianceStateRequest.WireType, false)] = ApplianceStateRequest.Read,
        [(ApplianceStateReply.WireType, true)] = ApplianceStateReply.Read,
        [(ApplianceCommandRequest.WireType, false)] = ApplianceCommandRequest.Read,
        [(ApplianceReadingsRequest.WireType, false)] = ApplianceReadingsRequest.Read,
        [(ApplianceReadingsReply.WireType, true)] = ApplianceReadingsReply.Read,
        [(PimSyncRequest.WireType, false)] = PimSyncRequest.Read,
        [(PimSyncedReply.WireType, true)] = PimSyncedReply.Read,
        [(StockRequest.WireType, false)] = StockRequest.Read,
        [(StockedReply.WireType, true)] = StockedReply.Read,
        [(DropTicketsNotice.WireType, false)] = DropTicketsNotice.Read,
        [(CostRequest.WireType, false)] = CostRequest.Read,
        [(CostReply.WireType, true)] = CostReply.Read,
    };

    /// <summary>The frame (length prefix included) of <paramref name="message"/> under <paramref name="id"/>.</summary>
    public static byte[] Encode(long id, ControlMessage message)
    {
        var (buffer, length) = EncodePooled(id, message);
        try
        {
            return buffer.AsSpan(0, length).ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
        }
    }

    /// <summary>The body (the CBOR map, without the length prefix).</summary>
    public static byte[] EncodeBody(long id, ControlMessage message) => Encode(id, message)[4..];

    private static (byte[] Buffer, int Length) EncodePooled(long id, ControlMessage message)
    {
        // The entries are written as a CBOR sequence and the map header (fewer than 24 entries: one
        // byte) is put in front, so the count need not be known before the fields are written.
        var entries = new CborWriter(CborConformanceMode.Strict, allowMultipleRootLevelValues: true);
        entries.WriteTextString("t");
        entries.WriteTextString(message.Type);
        var count = 2;
        if (message.IsReply)
        {
            entries.WriteTextString("re");
            entries.WriteBoolean(true);
            count++;
        }
        entries.WriteTextString("id");
        entries.WriteInt64(id);
        var fields = new FieldWriter(entries);
        message.Write(fields);
        count += fields.Count;
        if (count >= 24) throw new InvalidOperationException("a control message has fewer than 22 fields");
        var bodyLength = 1 + entries.BytesWritten;
        if (bodyLength > ControlProtocol.MaxFrameBytes) throw new ProtocolException("a control message exceeds 1 MiB");
        var buffer = ArrayPool<byte>.Shared.Rent(4 + bodyLength);
        BinaryPrimitives.WriteUInt32BigEndian(buffer, (uint)bodyLength);
        buffer[4] = (byte)(0xa0 | count);
        entries.Encode(buffer.AsSpan(5));
        return (buffer, 4 + bodyLength);
    }

    /// <summary>Writes one frame in a single write; returns the bytes written (prefix included).</summary>
    public static async ValueTask<int> WriteAsync(Stream stream, long id, ControlMessage message, CancellationToken cancellationToken)
    {
        var (buffer, length) = EncodePooled(id, message);
        try
        {
            await stream.WriteAsync(buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            return length;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
        }
    }

    /// <summary>
    /// Reads one frame and says how many bytes it took (prefix included); null at a clean end of
    /// stream. A frame that cannot be decoded throws <see cref="ProtocolException"/>, with the id
    /// filled in when the message was readable enough to be answered. A length prefix above
    /// <paramref name="maxFrameBytes"/> is refused before anything of the body is read or buffered.
    /// </summary>
    public static async ValueTask<(ControlEnvelope? Envelope, int Bytes)> ReadAsync(Stream stream, byte[] header, CancellationToken cancellationToken, int maxFrameBytes = ControlProtocol.MaxFrameBytes)
    {
        var read = await stream.ReadAtLeastAsync(header.AsMemory(0, 4), 4, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        if (read == 0) return (null, 0);
        if (read < 4) throw new ProtocolException("the control channel closed in the middle of a frame");
        var length = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (length > Math.Min(maxFrameBytes, ControlProtocol.MaxFrameBytes))
        {
            throw new ProtocolException($"control frame of {length} bytes exceeds the limit of {Math.Min(maxFrameBytes, ControlProtocol.MaxFrameBytes)} bytes for this connection");
        }
        var body = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            await stream.ReadExactlyAsync(body.AsMemory(0, (int)length), cancellationToken).ConfigureAwait(false);
            return (Decode(body.AsMemory(0, (int)length)), 4 + (int)length);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(body, clearArray: true);
        }
    }

    /// <summary>Decodes a frame body into its typed message; every failure is a <see cref="ProtocolException"/>.</summary>
    public static ControlEnvelope Decode(ReadOnlyMemory<byte> body)
    {
        var r = new CborReader(body, CborConformanceMode.Strict);
        int count;
        try
        {
            count = r.ReadStartMap() ?? throw new FormatException("indefinite-length map");
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or FormatException)
        {
            throw new ProtocolException("a control frame must hold a CBOR map with the message type 't'", "t", e);
        }
        string? type = null;
        long? id = null;
        var reply = false;
        var fields = new Dictionary<string, ReadOnlyMemory<byte>>(StringComparer.Ordinal);
        var truncated = false;
        string? cut = null;
        for (var i = 0; i < count && !truncated; i++)
        {
            string key;
            ReadOnlyMemory<byte> value;
            try
            {
                key = r.ReadTextString();
            }
            catch (Exception e) when (e is CborContentException or InvalidOperationException or FormatException)
            {
                truncated = true;
                break;
            }
            try
            {
                value = r.ReadEncodedValue();
            }
            catch (Exception e) when (e is CborContentException or InvalidOperationException or FormatException)
            {
                truncated = true;
                cut = key;
                break;
            }
            try
            {
                switch (key)
                {
                    case "t": type = new CborReader(value).ReadTextString(); break;
                    case "id": id = new CborReader(value).ReadInt64(); break;
                    case "re": reply = new CborReader(value).ReadBoolean(); break;
                    default:
                        if (!fields.TryAdd(key, value)) throw new FormatException("duplicate field");
                        break;
                }
            }
            catch (Exception e) when (e is CborContentException or InvalidOperationException or FormatException or OverflowException)
            {
                throw new ProtocolException($"field '{key}' of a control message has the wrong type", key, e);
            }
        }
        if (!truncated)
        {
            try
            {
                r.ReadEndMap();
            }
            catch (Exception e) when (e is CborContentException or InvalidOperationException)
            {
                throw new ProtocolException("a control message's map is malformed", "t", e);
            }
            if (r.BytesRemaining != 0) throw new ProtocolException("trailing bytes after a control message", "t");
        }
        if (type is null) throw new ProtocolException("a control message lacks its type 't'", cut ?? "t");
        if (id is null) throw Stamp(new ProtocolException($"the '{type}' message lacks its id", cut ?? "id"), null, reply, type);
        if (!Decoders.TryGetValue((type, reply), out var decoder))
        {
            throw Stamp(new ProtocolException($"control protocol {ControlProtocol.Alpn} has no {(reply ? "reply" : "request")} '{type}'", "t", code: ErrorCode.UnknownRequest), id, reply, type);
        }
        ControlMessage message;
        try
        {
            message = decoder(new FieldReader(type, fields, truncated));
        }
        catch (ProtocolException e)
        {
            throw Stamp(e, id, reply, type);
        }
        if (truncated) throw Stamp(new ProtocolException($"the '{type}' message is truncated", cut ?? "t"), id, reply, type);
        return new ControlEnvelope(id.Value, message);
    }

    private static ProtocolException Stamp(ProtocolException e, long? id, bool reply, string type)
    {
        e.RequestId = id;
        e.IsReply = reply;
        e.MessageType = type;
        return e;
    }
}
