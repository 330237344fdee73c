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

/// <summary>
/// <c>pim-sync</c>: changes since revision <see cref="Since"/>; <see cref="Horizon"/> is the one the terminal's last
/// <see cref="PimSyncedReply"/> gave (0 for none yet), so that the home server knows whether marks of deleted items it had
/// not seen were let go since. Null (the field absent): a terminal that cannot act on a reset, which is never told of one.
/// </summary>
public sealed record PimSyncRequest(long Since, IReadOnlyList<PimEntryChange> Changes, long? Horizon = null) : ControlMessage
{
    public const string WireType = "pim-sync";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("since", Since);
        w.List("changes", Changes, static (c, x) => PimItemWire.Write(c, x.Id, x.Kind, x.BaseVersion, x.Delete, x.Body));
        if (Horizon is { } horizon) w.Int("horizon", horizon);
    }

    internal static PimSyncRequest Read(FieldReader r) => new(r.Int("since", 0),
        r.List("changes", 1000, "[id, kind, base_version, delete, body] items", c => PimItemWire.Read(c, static (id, kind, version, delete, body) => new PimEntryChange(id, kind, version, delete, body))),
        r.Has("horizon") ? r.Int("horizon", 0) : null);
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
/// <see cref="Horizon"/> is how far the marks of deleted items were let go (the terminal sends it back);
/// with <see cref="Reset"/>, marks it had not seen went: the changes start again from the first revision,
/// and once the last page is in, the terminal drops every item it holds that came in none of the pages
/// (and that this sync did not just apply).
/// </summary>
public sealed record PimSyncedReply(long Revision, IReadOnlyList<PimEntryResult> Results, IReadOnlyList<PimEntry> Changes, bool More = false,
    long Horizon = 0, bool Reset = false) : ControlReply
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
        if (Horizon != 0) w.Int("horizon", Horizon);
        if (Reset) w.Bool("reset", true);
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
        r.Has("more") && r.Bool("more"),
        r.IntOr("horizon", 0, 0),
        r.Has("reset") && r.Bool("reset"));
}
