using Daiko.Home.Storage;

namespace Daiko.Home.Pim;

/// <summary>
/// Secure PIM storage (F17): the address book, schedule and to-do list live on the home server and
/// terminals synchronise with it over the control channel. Sync is two-way and incremental: a terminal
/// sends its edits with the version each was based on and the last revision it saw; it gets back the
/// outcome of each edit and every change newer than that revision. An edit based on a stale version
/// is a conflict, never a silent overwrite. Deletions are kept as tombstones so that every terminal
/// learns of them; when new items need their rows, the oldest go, and a terminal that had not seen them
/// starts again from the first revision (<see cref="PimSyncResult.Reset"/>). Items live in the home store's PIM repository.
/// </summary>
/// <param name="limits">what the owner's store holds at most (<see cref="PimLimits.Default"/> if null).</param>
public sealed class PimStore(IHomeStore store, TimeProvider? time = null, PimLimits? limits = null)
{
    public const int MaxBodyBytes = 64 * 1024;

    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>
    /// Applies the terminal's changes atomically and returns what it has not seen yet, one page at a
    /// time: when the newer items exceed <paramref name="pageBytes"/> the result holds the first of them
    /// (at least one), its revision is the last one returned and <see cref="PimSyncResult.More"/> is set.
    /// </summary>
    /// <param name="horizonSeen">the <see cref="PimSyncResult.Horizon"/> of the terminal's last sync (0 for none yet; null for a terminal from before horizons).</param>
    public async Task<PimSyncResult> SyncAsync(long sinceRevision, IReadOnlyList<PimChange> changes, int pageBytes = int.MaxValue, long? horizonSeen = null,
        CancellationToken cancellationToken = default)
    {
        var rejections = changes.Select(Validate).ToList();
        var valid = changes.Where((_, i) => rejections[i] is null).ToList();
        var synced = await store.Pim.SyncAsync(sinceRevision, valid, _time.GetUtcNow(), pageBytes, limits, horizonSeen, cancellationToken);
        // The results in the order of the terminal's changes: rejected ones never reached the store.
        var applied = synced.Results.GetEnumerator();
        var results = new List<PimChangeResult>(changes.Count);
        for (var i = 0; i < changes.Count; i++)
        {
            if (rejections[i] is { } reason)
            {
                results.Add(new PimChangeResult(changes[i].Id, PimChangeOutcome.Rejected, null, reason));
            }
            else
            {
                applied.MoveNext();
                results.Add(applied.Current);
            }
        }
        return synced with { Results = results };
    }

    /// <summary>Every live (not deleted) item of one kind.</summary>
    public Task<IReadOnlyList<PimItem>> ListAsync(PimKind kind, CancellationToken cancellationToken = default) => store.Pim.ListAsync(kind, cancellationToken);

    private static string? Validate(PimChange change)
    {
        if (string.IsNullOrWhiteSpace(change.Id) || change.Id.Length > 128)
            return "an item id must be 1 to 128 characters";
        if (!Enum.IsDefined(change.Kind))
            return "unknown item kind";
        if (change.BaseVersion < 0)
            return "a base version cannot be negative";
        // Written, never deleted: an item stored before this was refused can still be deleted.
        if (!change.Delete && (change.Id.Contains('\0') || change.Body.Contains('\0')))
            return "an item may not hold the character U+0000";
        if (!change.Delete && System.Text.Encoding.UTF8.GetByteCount(change.Body) > MaxBodyBytes)
            return $"an item body is limited to {MaxBodyBytes / 1024} KiB";
        return null;
    }
}
