namespace Daiko.Home.Pim;

/// <summary>The kinds of personal data the home server keeps for the user (seed [0087], Fig. 24).</summary>
public enum PimKind
{
    Contact,
    Event,
    Todo,
}

/// <summary>
/// One personal-information item. <see cref="Version"/> counts this item's changes (optimistic
/// concurrency); <see cref="Revision"/> is the store-wide change number a terminal syncs from.
/// <see cref="Body"/> is the item's content as the terminal wrote it (JSON by convention).
/// </summary>
public sealed record PimItem(string Id, PimKind Kind, long Version, long Revision, bool Deleted, string Body, DateTimeOffset ModifiedAt);

/// <summary>A terminal's change: <see cref="BaseVersion"/> is the version it edited (0 for a new item).</summary>
public sealed record PimChange(string Id, PimKind Kind, long BaseVersion, bool Delete, string Body);

public enum PimChangeOutcome
{
    Applied,

    /// <summary>The item changed on the home server since the terminal last saw it; the terminal gets the current item.</summary>
    Conflict,

    Rejected,
}

public sealed record PimChangeResult(string Id, PimChangeOutcome Outcome, PimItem? Current, string? Reason);

/// <summary>
/// What one owner's PIM store holds at most: rows (items, and the marks deleted ones leave so that every terminal
/// learns of the deletion) and the UTF-8 bytes of all bodies together. A change past either is rejected; deleting or
/// shrinking an item is never refused for them, and a deletion frees its bytes (its row stays as the mark). A new item
/// that finds the rows full makes room by letting go of the oldest marks first (<see cref="PimSyncResult.Horizon"/>):
/// only live items fill the store for good.
/// </summary>
public sealed record PimLimits(int MaxItems, long MaxBodyBytes)
{
    /// <summary>100,000 rows and 32 MiB of bodies (each body at most <see cref="PimStore.MaxBodyBytes"/>).</summary>
    public static PimLimits Default { get; } = new(100_000, 32L << 20);
}

/// <summary>The answer to a sync: results of the terminal's changes and everything newer than its revision.</summary>
public sealed record PimSyncResult(IReadOnlyList<PimChangeResult> Results, IReadOnlyList<PimItem> Changes, long Revision, bool More = false)
{
    /// <summary>
    /// How far the marks of deleted items were let go to make room (the revision of the newest one gone; 0 for none). A
    /// terminal passes it back with its next sync, so that the store knows whether marks went that it had not seen.
    /// </summary>
    public long Horizon { get; init; }

    /// <summary>
    /// Marks the terminal had not seen were let go: <see cref="Changes"/> start again from the first revision, and once
    /// the last page is in, the terminal drops every item it holds that came in none of them (and that this sync did not
    /// just apply): those were deleted elsewhere.
    /// </summary>
    public bool Reset { get; init; }
}
