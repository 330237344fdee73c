using Daiko.Protocol;
using Daiko.Protocol.Codecs;
using Daiko.Protocol.Wire;

namespace Daiko.Fuzz;

/// <summary>
/// The control channel as the home server and the terminal read it: length-prefixed frames, each
/// decoded into its typed message; and the session ticket and exported-session codecs. Whatever is
/// read must be written and read back to the same bytes.
/// </summary>
internal static class ControlTargets
{
    public static readonly FuzzTarget Control = new("control",
        "a stream of control frames (u32 length + CBOR map) read and decoded into every typed control message, each re-encoded and decoded again",
        ReadFrames, e => e is ProtocolException or EndOfStreamException);

    public static readonly FuzzTarget Codecs = new("codecs",
        "the session ticket and exported-session CBOR codecs (both decoders see every input; what decodes is re-encoded and decoded again)",
        DecodeCodecs, e => e is FormatException);

    private static void ReadFrames(byte[] input)
    {
        using var stream = new MemoryStream(input, writable: false);
        var header = new byte[4];
        while (true)
        {
            ControlEnvelope? envelope;
            try
            {
                envelope = FuzzTargets.Sync(ControlFrame.ReadAsync(stream, header, CancellationToken.None)).Envelope;
            }
            catch (ProtocolException e) when (e.RequestId is not null && e.Code is not (ErrorCode.BadRequest or ErrorCode.UnknownRequest))
            {
                throw new FuzzFinding($"an answerable malformed request would be answered {e.Code}, not bad-request");
            }
            if (envelope is not { } read) return;
            var encoded = ControlFrame.EncodeBody(read.Id, read.Message);
            var again = ControlFrame.Decode(encoded);
            if (again.Id != read.Id || again.Message.Type != read.Message.Type || again.Message.IsReply != read.Message.IsReply)
                throw new FuzzFinding($"a '{read.Message.Type}' message changed when written and read back");
            FuzzTargets.SameBytes(ControlFrame.EncodeBody(again.Id, again.Message), encoded, read.Message.Type);
        }
    }

    private static void DecodeCodecs(byte[] input)
    {
        // An input is accepted when either codec reads it; it is refused when both refuse it.
        FormatException? refused = null;
        try
        {
            var ticket = SessionTicketCodec.Encode(SessionTicketCodec.Decode(input));
            FuzzTargets.SameBytes(SessionTicketCodec.Encode(SessionTicketCodec.Decode(ticket)), ticket, "session ticket");
        }
        catch (FormatException e)
        {
            refused = e;
        }
        try
        {
            var session = ExportedSessionCodec.Encode(ExportedSessionCodec.Decode(input));
            FuzzTargets.SameBytes(ExportedSessionCodec.Encode(ExportedSessionCodec.Decode(session)), session, "exported session");
        }
        catch (FormatException) when (refused is null)
        {
        }
    }
}
