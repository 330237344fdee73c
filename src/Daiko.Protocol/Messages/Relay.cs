using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Messages;

/// <summary><c>relay-data</c>, both ways, never replied to: up to 64 KiB of a relayed byte stream.</summary>
public sealed record RelayData(long Relay, ReadOnlyMemory<byte> Data) : ControlMessage
{
    public const string WireType = "relay-data";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("relay", Relay);
        w.Bytes("data", Data.Span);
    }

    internal static RelayData Read(FieldReader r) => new(r.Int("relay", 1), r.Bytes("data", ControlProtocol.MaxRelayChunk));
}

/// <summary><c>relay-close</c>: the relayed stream ended (with a reason, if any).</summary>
public sealed record RelayClose(long Relay, string? Reason = null) : ControlMessage
{
    public const string WireType = "relay-close";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("relay", Relay);
        if (Reason is not null) w.Text("reason", Reason);
    }

    internal static RelayClose Read(FieldReader r) => new(r.Int("relay", 1), r.TextOrNull("reason", 4096));
}

/// <summary>
/// <c>relay-window</c>, daiko/2 only, both ways, never replied to: the sender's reader took
/// <see cref="Bytes"/> more of the relay's data, and the other side may send that many more. Sent once what
/// was taken and not yet granted reaches half of <see cref="ControlProtocol.RelayWindowBytes"/>.
/// </summary>
public sealed record RelayWindow(long Relay, long Bytes) : ControlMessage
{
    public const string WireType = "relay-window";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("relay", Relay);
        w.Int("bytes", Bytes);
    }

    internal static RelayWindow Read(FieldReader r) => new(r.Int("relay", 1), r.Int("bytes", 1, ControlProtocol.RelayWindowBytes));
}
