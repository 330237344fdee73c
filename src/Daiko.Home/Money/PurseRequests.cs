using System.Data.Common;
using Daiko.Money;

namespace Daiko.Home.Money;

/// <summary>
/// One money request as the purse keys it: its kind, the party whose id it is (the market or bank that
/// signed it; "card" for the card's own ids), the id, and the hash of the signed content (so a
/// re-signed identical message is the same request, and a different one under the same id is not).
/// </summary>
internal sealed record MoneyRequestId(string Kind, string Party, string Id, string MessageHash)
{
    /// <summary>How an answer stored before ids were scoped was keyed (<c>pay:ID</c>, <c>refill:ID</c>, …).</summary>
    public string LegacyKey => Kind + ":" + Id;

    /// <summary>Whether an answer stored under <see cref="LegacyKey"/> is this party's answer to this same request (null: any is).</summary>
    public Func<byte[], bool>? LegacyMatches { get; init; }
}

/// <summary>
/// The purse's stored answers, one per (kind, party, id): a repeat of the same message gets the stored
/// answer; the same id with a different message is refused with <see cref="PurseRefusal.Conflict"/>
/// and learns nothing of the first. Another party's use of an id never touches this party's.
/// </summary>
internal static class PurseRequests
{
    /// <summary>The stored answer of an identical earlier request, or null; a different message under the same id throws.</summary>
    public static byte[]? Find(DbConnection c, DbTransaction tx, MoneyRequestId id)
    {
        var stored = PurseSql.Row(c, tx, "SELECT message_hash, answer FROM purse_requests WHERE kind = @k AND party = @p AND id = @i",
            r => (Hash: r.GetString(0), Answer: (byte[])r.GetValue(1)), ("@k", id.Kind), ("@p", id.Party), ("@i", id.Id));
        if (stored is { } found) return found.Hash == id.MessageHash ? found.Answer : throw Conflict(id);
        if (PurseSql.Scalar(c, tx, "SELECT answer FROM purse_answers WHERE request_id = @r", ("@r", id.LegacyKey)) is not byte[] answer) return null;
        // An answer from before ids were scoped answers only its own party's identical request; any other is served afresh.
        return id.LegacyMatches is null || id.LegacyMatches(answer) ? answer : null;
    }

    public static void Store(DbConnection c, DbTransaction tx, MoneyRequestId id, byte[] answer) =>
        PurseSql.Execute(c, tx, "INSERT INTO purse_requests(kind, party, id, message_hash, answer) VALUES(@k, @p, @i, @h, @a)",
            ("@k", id.Kind), ("@p", id.Party), ("@i", id.Id), ("@h", id.MessageHash), ("@a", answer));

    public static PurseException Conflict(MoneyRequestId id) =>
        new(PurseRefusal.Conflict, $"'{id.Party}' already used {id.Kind} id '{id.Id}' for a different message: refused (a repeat of the same message gets its first answer)");
}
