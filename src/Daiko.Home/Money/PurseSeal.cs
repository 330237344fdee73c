using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Daiko.Money;

namespace Daiko.Home.Money;

/// <summary>The purse's state as the database holds it: the log's head and whether its chain holds, and the balances.</summary>
internal sealed record PurseState(bool LogIntact, long Entries, string Head, IReadOnlyList<(string Currency, long Amount)> Balances)
{
    /// <summary>The balances as one canonical text: "EUR=5;JPY=1000" (sorted by currency).</summary>
    public string BalancesText => string.Join(";", Balances.Select(b => $"{b.Currency}={b.Amount.ToString(CultureInfo.InvariantCulture)}"));
}

/// <summary>
/// The hash-chained payment log: each entry's hash covers the previous hash and the entry, so the head
/// commits to the whole log; <see cref="Read"/> re-computes the chain and checks every balance equals
/// the sum of its entries.
/// </summary>
internal static class PurseLog
{
    public const string GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000";

    public static string EntryText(long seq, string at, string kind, string reference, long amount, string currency, long balance) =>
        $"{seq}|{at}|{kind}|{reference}|{amount}|{currency}|{balance}";

    public static string ChainHash(string previous, string entry) =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(previous + "\n" + entry))).ToLowerInvariant();

    public static PurseState Read(DbConnection c, DbTransaction? tx)
    {
        var intact = true;
        var previous = GenesisHash;
        var sums = new Dictionary<string, long>(StringComparer.Ordinal);
        long seq = 0;
        using (var cmd = c.CreateCommand())
        {
            cmd.Transaction = tx;
            cmd.CommandText = "SELECT seq, at, kind, ref, amount, currency, balance_after, prev_hash, hash FROM purse_log ORDER BY seq";
            using var r = cmd.ExecuteReader();
            while (r.Read())
            {
                if (r.GetInt64(0) != ++seq) intact = false;
                var entry = EntryText(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt64(4), r.GetString(5), r.GetInt64(6));
                if (r.GetString(7) != previous || ChainHash(previous, entry) != r.GetString(8)) intact = false;
                var currency = r.GetString(5);
                sums[currency] = sums.GetValueOrDefault(currency) + r.GetInt64(4);
                if (sums[currency] != r.GetInt64(6)) intact = false;
                previous = r.GetString(8);
            }
        }
        var balances = new List<(string, long)>();
        using (var cmd = c.CreateCommand())
        {
            cmd.Transaction = tx;
            cmd.CommandText = "SELECT currency, amount FROM purse_balances ORDER BY currency";
            using var r = cmd.ExecuteReader();
            while (r.Read())
            {
                if (sums.GetValueOrDefault(r.GetString(0)) != r.GetInt64(1)) intact = false;
                balances.Add((r.GetString(0), r.GetInt64(1)));
            }
        }
        balances.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return new PurseState(intact, seq, previous, balances);
    }

    /// <summary>
    /// The purse's state from the log's last entry alone: intact when that entry's hash re-computes from
    /// its own fields and its predecessor's hash, and its balance is the stored balance of its currency.
    /// What lies before it is vouched for by the chain check done earlier and by the seal over the head.
    /// </summary>
    public static PurseState ReadTail(DbConnection c, DbTransaction? tx)
    {
        var balances = Balances(c, tx);
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "SELECT seq, at, kind, ref, amount, currency, balance_after, prev_hash, hash FROM purse_log ORDER BY seq DESC LIMIT 1";
        using var r = cmd.ExecuteReader();
        if (!r.Read()) return new PurseState(balances.Count == 0, 0, GenesisHash, balances);
        var entry = EntryText(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt64(4), r.GetString(5), r.GetInt64(6));
        var intact = ChainHash(r.GetString(7), entry) == r.GetString(8)
            && balances.Any(b => b.Currency == r.GetString(5) && b.Amount == r.GetInt64(6));
        return new PurseState(intact, r.GetInt64(0), r.GetString(8), balances);
    }

    /// <summary>
    /// A payment as the log has it (what it took, in which currency, when) and whether the log re-credited it already:
    /// read from the log's entry, not from the unsealed payments table, with every entry from it to the head re-hashed
    /// and linked (the head itself is vouched for by the seal, checked before any money moves). An edit of the payment's
    /// entry, or of the payments table, cannot make a cancellation re-credit more, twice, or outside the window.
    /// </summary>
    public static (long Amount, string Currency, DateTimeOffset At, bool Recredited) Payment(DbConnection c, DbTransaction? tx, string paymentId)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = """
            SELECT seq, at, kind, ref, amount, currency, balance_after, prev_hash, hash FROM purse_log
            WHERE seq >= (SELECT MIN(seq) FROM purse_log WHERE kind = 'payment' AND ref = @p) ORDER BY seq
            """;
        var parameter = cmd.CreateParameter();
        parameter.ParameterName = "@p";
        parameter.Value = paymentId;
        cmd.Parameters.Add(parameter);
        using var r = cmd.ExecuteReader();
        if (!r.Read()) throw new PurseException(PurseRefusal.UnknownPayment, $"the purse's log has no payment {paymentId}");
        var altered = new PurseException(PurseRefusal.Malformed, $"the purse's log does not hold payment {paymentId} as it was written: the store was altered");
        var (amount, currency, at) = (-r.GetInt64(4), r.GetString(5), DateTimeOffset.Parse(r.GetString(1), System.Globalization.CultureInfo.InvariantCulture));
        var recredited = false;
        var seq = r.GetInt64(0);
        string? previous = null;
        do
        {
            var entry = EntryText(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt64(4), r.GetString(5), r.GetInt64(6));
            if (r.GetInt64(0) != seq++ || previous is not null && r.GetString(7) != previous || ChainHash(r.GetString(7), entry) != r.GetString(8)) throw altered;
            if (r.GetString(2) == "cancellation" && r.GetString(3) == paymentId) recredited = true;
            previous = r.GetString(8);
        }
        while (r.Read());
        if (amount <= 0) throw altered;
        return (amount, currency, at, recredited);
    }

    private static List<(string Currency, long Amount)> Balances(DbConnection c, DbTransaction? tx)
    {
        var balances = new List<(string Currency, long Amount)>();
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "SELECT currency, amount FROM purse_balances ORDER BY currency";
        using var r = cmd.ExecuteReader();
        while (r.Read()) balances.Add((r.GetString(0), r.GetInt64(1)));
        balances.Sort((a, b) => string.CompareOrdinal(a.Currency, b.Currency));
        return balances;
    }
}

/// <summary>
/// The card's seal over the purse: a COSE_Sign1 by the purse key over (balances, log head, entries,
/// counter), rewritten with every committed batch of money operations. The counter also lives in the
/// token (a private data object), so a database rolled back to an older — correctly sealed — state
/// meets a token that has moved on and is refused. The database is committed first and the token
/// second (a token without a counter counts as 0): a crash in between leaves the token one behind,
/// which the next check heals; any other difference is refused.
/// </summary>
internal static class PurseSeal
{
    private const string Refused = "nothing was moved; restore home.db from a backup that matches the home card";

    /// <summary>
    /// How many times rows of the log were updated or deleted (counted by the store's triggers; the
    /// ledger only ever inserts). Long.MinValue when a trigger is missing or disabled: then nothing can be
    /// assumed and the whole chain is checked. <paramref name="query"/> is the store's <see cref="Daiko.Home.Storage.IHomeStore.PurseLogEditsQuery"/>.
    /// </summary>
    public static long LogEdits(DbConnection c, DbTransaction tx, string query)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = query;
        using var r = cmd.ExecuteReader();
        return r.Read() && !r.IsDBNull(0) && Convert.ToInt64(r.GetValue(1), CultureInfo.InvariantCulture) == 0
            ? Convert.ToInt64(r.GetValue(0), CultureInfo.InvariantCulture)
            : long.MinValue;
    }

    /// <summary>Checks the whole log's chain and sums and the seal against the card; returns the counter the next seal follows (0: a purse never sealed, whose log verified).</summary>
    public static long Check(DbConnection c, DbTransaction tx, IPurseCard card) => Check(c, tx, card, PurseLog.Read(c, tx));

    /// <summary>How often the card's counter is read again when the database's seal is more than one ahead of it (10, 20, … ms apart).</summary>
    public const int StaleCounterRereads = 5;

    /// <summary>The check of every operation once the whole chain was checked: the seal, the counter and the log's last entry (see <see cref="PurseLog.ReadTail"/>).</summary>
    public static long CheckTail(DbConnection c, DbTransaction tx, IPurseCard card) => Check(c, tx, card, PurseLog.ReadTail(c, tx));

    private static long Check(DbConnection c, DbTransaction tx, IPurseCard card, PurseState state)
    {
        if (!state.LogIntact) throw Broken("the payment log or the balances were altered, truncated or reordered (the hash chain or the sums do not hold)");
        var stored = ReadRow(c, tx);
        var tokenCounter = card.ReadSealCounter();
        if (stored is null)
        {
            if (tokenCounter is not null) throw Broken("the purse's seal is missing from the database while the home card holds its counter");
            // A purse from before the seal: its log verified above, so the caller seals it now (counter 1).
            return 0;
        }
        var token = tokenCounter ?? 0;
        var (counter, cose) = stored.Value;
        BalanceSeal seal;
        using (var key = card.PurseKey())
        {
            try
            {
                seal = MoneyCodec.Verify<BalanceSeal>(cose, key);
            }
            catch (PurseException)
            {
                throw Broken("the purse's seal does not verify under the home card's purse key");
            }
        }
        if (seal.Card != card.CardId || seal.Counter != counter
            || seal.Head != state.Head || seal.Entries != state.Entries || seal.Balances != state.BalancesText)
        {
            throw Broken("the stored balances or log do not match the home card's seal");
        }
        if (counter < token) throw Broken($"the database is older than the home card (seal {counter}, card {token}): it was rolled back");
        // The nodes of a hosted deployment share one token: another node's last move of the counter can take a
        // moment to show in this process's view of it (SoftHSM2's file store). A database more than one ahead
        // cannot come from a rollback, so the card is read again for a little while before it is refused.
        for (var attempt = 1; counter > token + 1 && attempt <= StaleCounterRereads; attempt++)
        {
            Thread.Sleep(10 * attempt);
            token = Math.Max(token, card.ReadSealCounter() ?? 0);
        }
        if (counter > token + 1) throw Broken($"the database's seal ({counter}) is ahead of the home card ({token})");
        // counter == token + 1: the last commit reached the database but not the token (a crash); catch the token up.
        if (counter == token + 1) card.AdvanceSealCounter(counter);
        return counter;
    }

    /// <summary>Signs the purse's current state with <paramref name="counter"/> and stores the seal in this transaction.</summary>
    public static void Seal(DbConnection c, DbTransaction tx, IPurseCard card, long counter) => Write(c, tx, card, PurseLog.ReadTail(c, tx), counter);

    private static void Write(DbConnection c, DbTransaction tx, IPurseCard card, PurseState state, long counter)
    {
        var cose = new BalanceSeal(card.CardId, counter, state.Head, state.Entries, state.BalancesText).Sign(card.OpenSigningKey());
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "INSERT INTO purse_seal(id, counter, seal) VALUES(1, @n, @s) ON CONFLICT(id) DO UPDATE SET counter = @n, seal = @s";
        Add(cmd, "@n", counter);
        Add(cmd, "@s", cose);
        cmd.ExecuteNonQuery();
    }

    private static (long Counter, byte[] Seal)? ReadRow(DbConnection c, DbTransaction tx)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "SELECT counter, seal FROM purse_seal WHERE id = 1";
        using var r = cmd.ExecuteReader();
        return r.Read() ? (r.GetInt64(0), (byte[])r.GetValue(1)) : null;
    }

    private static PurseException Broken(string what) => new(PurseRefusal.SealBroken, $"{what}: {Refused}");

    private static void Add(DbCommand cmd, string name, object value)
    {
        var p = cmd.CreateParameter();
        p.ParameterName = name;
        p.Value = value;
        cmd.Parameters.Add(p);
    }
}
