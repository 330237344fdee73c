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
