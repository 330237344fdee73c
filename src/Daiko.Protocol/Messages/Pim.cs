using System.Formats.Cbor;
using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Messages;

/// <summary>The kinds of personal data synced (F17).</summary>
public enum PimEntryKind
{
    Contact,
    Event,
    Todo,
}

/// <summary>What became of one of the terminal's changes.</summary>
public enum PimEntryOutcome
{
    Applied,
    Conflict,
    Rejected,
}

/// <summary>A terminal's change: <see cref="BaseVersion"/> is the version it edited (0 for a new item).</summary>
public sealed record PimEntryChange(string Id, PimEntryKind Kind, long BaseVersion, bool Delete, string Body);

/// <summary>The result of one change and the item's version now.</summary>
public sealed record PimEntryResult(string Id, PimEntryOutcome Outcome, string? Reason, long Version);

/// <summary>An item newer than the terminal's revision.</summary>
public sealed record PimEntry(string Id, PimEntryKind Kind, long Version, bool Deleted, string Body);

/// <summary><c>pim-sync</c>: changes since revision <see cref="Since"/>.</summary>
public sealed record PimSyncRequest(long Since, IReadOnlyList<PimEntryChange> Changes) : ControlMessage
{
    public const string WireType = "pim-sync";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("since", Since);
        w.List("changes", Changes, static (c, x) => PimItemWire.Write(c, x.Id, x.Kind, x.BaseVersion, x.Delete, x.Body));
    }

    internal static PimSyncRequest Read(FieldReader r) => new(r.Int("since", 0),
        r.List("changes", 1000, "[id, kind, base_version, delete, body] items", c => PimItemWire.Read(c, static (id, kind, version, delete, body) => new PimEntryChange(id, kind, version, delete, body))));
}

/// <summary>
/// One PIM item on the wire, the same in a terminal's change and in the home server's reply:
/// <c>[id, kind, version, deleted, body]</c> (a change's version is the one it edited, its flag a delete).
/// </summary>
internal static class PimItemWire
{
    private static readonly IReadOnlyDictionary<string, PimEntryKind> Kinds =
        Enum.GetValues<PimEntryKind>().ToDictionary(k => k.ToString().ToLowerInvariant(), StringComparer.Ordinal);

    public static void Write(CborWriter c, string id, PimEntryKind kind, long version, bool deleted, string body)
    {
        c.WriteStartArray(5);
        c.WriteTextString(id);
        c.WriteTextString(kind.ToString().ToLowerInvariant());
        c.WriteInt64(version);
        c.WriteBoolean(deleted);
        c.WriteTextString(body);
        c.WriteEndArray();
    }

    public static T Read<T>(CborReader c, Func<string, PimEntryKind, long, bool, string, T> make)
    {
        FieldReader.ExpectArray(c, 5);
        var id = FieldReader.ReadText(c, ControlProtocol.MaxNameLength);
        var kind = Kinds.TryGetValue(c.ReadTextString(), out var k) ? k : throw new FormatException("unknown PIM kind");
        var item = make(id, kind, c.ReadInt64(), c.ReadBoolean(), FieldReader.ReadText(c, ControlProtocol.MaxTextLength));
        c.ReadEndArray();
        return item;
    }
}

/// <summary>
/// <c>pim-synced</c>: the revision the terminal has now seen, the results of its changes, and newer
/// items — one page of them: with <see cref="More"/> the terminal syncs again from <see cref="Revision"/>
/// for the next page (a reply stays well under the frame limit whatever the store holds).
/// </summary>
public sealed record PimSyncedReply(long Revision, IReadOnlyList<PimEntryResult> Results, IReadOnlyList<PimEntry> Changes, bool More = false) : ControlReply
{
    public const string WireType = "pim-synced";

    private static readonly IReadOnlyDictionary<string, PimEntryOutcome> Outcomes =
        Enum.GetValues<PimEntryOutcome>().ToDictionary(o => o.ToString().ToLowerInvariant(), StringComparer.Ordinal);

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("revision", Revision);
        w.List("results", Results, static (c, x) =>
        {
            c.WriteStartArray(4);
            c.WriteTextString(x.Id);
            c.WriteTextString(x.Outcome.ToString().ToLowerInvariant());
            if (x.Reason is null) c.WriteNull(); else c.WriteTextString(x.Reason);
            c.WriteInt64(x.Version);
            c.WriteEndArray();
        });
        w.List("changes", Changes, static (c, x) => PimItemWire.Write(c, x.Id, x.Kind, x.Version, x.Deleted, x.Body));
        if (More) w.Bool("more", true);
    }

    internal static PimSyncedReply Read(FieldReader r) => new(r.Int("revision", 0),
        r.List("results", 1000, "[id, outcome, reason, version] items", c =>
        {
            FieldReader.ExpectArray(c, 4);
            var id = FieldReader.ReadText(c, ControlProtocol.MaxNameLength);
            var outcome = Outcomes.TryGetValue(c.ReadTextString(), out var o) ? o : throw new FormatException("unknown outcome");
            var result = new PimEntryResult(id, outcome, FieldReader.ReadTextOrNull(c, 4096), c.ReadInt64());
            c.ReadEndArray();
            return result;
        }),
        r.List("changes", ControlProtocol.MaxListItems, "[id, kind, version, deleted, body] items", c => PimItemWire.Read(c, static (id, kind, version, deleted, body) => new PimEntry(id, kind, version, deleted, body))),
        r.Has("more") && r.Bool("more"));
}
