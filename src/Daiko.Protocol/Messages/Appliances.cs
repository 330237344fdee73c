using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Messages;

/// <summary><c>appliance-list</c> request.</summary>
public sealed record ApplianceListRequest : ControlMessage
{
    public const string WireType = "appliance-list";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) { }

    internal static ApplianceListRequest Read(FieldReader r) => new();
}

/// <summary><c>appliances</c>: the names of the appliances the home server knows.</summary>
public sealed record AppliancesReply(IReadOnlyList<string> Names) : ControlReply
{
    public const string WireType = "appliances";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.TextList("names", Names.ToList());

    internal static AppliancesReply Read(FieldReader r) => new(r.TextList("names", 1000, ControlProtocol.MaxNameLength));
}

/// <summary><c>appliance-state</c> request: an appliance's state.</summary>
public sealed record ApplianceStateRequest(string Name) : ControlMessage
{
    public const string WireType = "appliance-state";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Text("name", Name);

    internal static ApplianceStateRequest Read(FieldReader r) => new(r.Text("name", ControlProtocol.MaxNameLength, allowEmpty: false));
}

/// <summary><c>appliance-state</c> reply: the appliance's JSON state.</summary>
public sealed record ApplianceStateReply(string State) : ControlReply
{
    public const string WireType = "appliance-state";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Text("state", State);

    internal static ApplianceStateReply Read(FieldReader r) => new(r.Text("state"));
}

/// <summary><c>appliance-command</c>: a command with [key, value] arguments; answered with <c>appliance-state</c>.</summary>
public sealed record ApplianceCommandRequest(string Name, string Command, IReadOnlyList<KeyValuePair<string, string>> Arguments) : ControlMessage
{
    public const string WireType = "appliance-command";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Text("name", Name);
        w.Text("command", Command);
        w.List("arguments", Arguments.ToList(), static (c, p) =>
        {
            c.WriteStartArray(2);
            c.WriteTextString(p.Key);
            c.WriteTextString(p.Value);
            c.WriteEndArray();
        });
    }

    internal static ApplianceCommandRequest Read(FieldReader r) => new(
        r.Text("name", ControlProtocol.MaxNameLength, allowEmpty: false),
        r.Text("command", ControlProtocol.MaxNameLength, allowEmpty: false),
        r.List("arguments", 64, "[key, value] text pairs", c =>
        {
            FieldReader.ExpectArray(c, 2);
            var pair = KeyValuePair.Create(FieldReader.ReadText(c, ControlProtocol.MaxNameLength), FieldReader.ReadText(c, 4096));
            c.ReadEndArray();
            return pair;
        }));
}

/// <summary><c>appliance-readings</c> request: the latest <see cref="Limit"/> readings (1-1000).</summary>
public sealed record ApplianceReadingsRequest(string Name, int Limit = 20) : ControlMessage
{
    public const string WireType = "appliance-readings";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Text("name", Name);
        w.Int("limit", Limit);
    }

    internal static ApplianceReadingsRequest Read(FieldReader r) =>
        new(r.Text("name", ControlProtocol.MaxNameLength, allowEmpty: false), (int)r.IntOr("limit", 20, 1, 1000));
}

/// <summary><c>appliance-readings</c> reply: time and state lines.</summary>
public sealed record ApplianceReadingsReply(IReadOnlyList<string> Readings) : ControlReply
{
    public const string WireType = "appliance-readings";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.TextList("readings", Readings.ToList());

    internal static ApplianceReadingsReply Read(FieldReader r) => new(r.TextList("readings", 1000));
}
