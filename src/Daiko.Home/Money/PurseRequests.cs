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
        using (var find = c.CreateCommand())
        {
            find.Transaction = tx;
            find.CommandText = "SELECT message_hash, answer FROM purse_requests WHERE kind = @k AND party = @p AND id = @i";
            PurseSql.Add(find, "@k", id.Kind);
            PurseSql.Add(find, "@p", id.Party);
            PurseSql.Add(find, "@i", id.Id);
            using var r = find.ExecuteReader();
            if (r.Read())
            {
                return r.GetString(0) == id.MessageHash ? (byte[])r.GetValue(1) : throw Conflict(id);
            }
        }
        using var legacy = c.CreateCommand();
        legacy.Transaction = tx;
        legacy.CommandText = "SELECT answer FROM purse_answers WHERE request_id = @r";
        PurseSql.Add(legacy, "@r", id.LegacyKey);
        if (legacy.ExecuteScalar() is not byte[] answer) return null;
        // An answer from before ids were scoped answers only its own party's identical request; any other is served afresh.
        return id.LegacyMatches is null || id.LegacyMatches(answer) ? answer : null;
    }

    public static void Store(DbConnection c, DbTransaction tx, MoneyRequestId id, byte[] answer) =>
        PurseSql.Execute(c, tx, "INSERT INTO purse_requests(kind, party, id, message_hash, answer) VALUES(@k, @p, @i, @h, @a)",
            ("@k", id.Kind), ("@p", id.Party), ("@i", id.Id), ("@h", id.MessageHash), ("@a", answer));

    public static PurseException Conflict(MoneyRequestId id) =>
        new(PurseRefusal.Conflict, $"'{id.Party}' already used {id.Kind} id '{id.Id}' for a different message: refused (a repeat of the same message gets its first answer)");
}

/// <summary>The purse's SQL helpers: commands in the caller's transaction with named parameters.</summary>
internal static class PurseSql
{
    public static void Execute(DbConnection c, DbTransaction tx, string sql, params (string, object)[] parameters)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        foreach (var (k, v) in parameters) Add(cmd, k, v);
        cmd.ExecuteNonQuery();
    }

    public static void Add(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }
}
