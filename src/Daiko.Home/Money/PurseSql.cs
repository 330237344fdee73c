using System.Data.Common;
using System.Runtime.CompilerServices;

namespace Daiko.Home.Money;

/// <summary>
/// The purse's SQL helpers: statements in the caller's transaction with named parameters. Inside
/// <see cref="KeepStatements"/> (a batch of money operations) each statement text has one command, run
/// again with new parameter values: on SQLite it is compiled once for the batch instead of once for
/// every operation of it (Microsoft.Data.Sqlite keeps a command's compiled statements); Npgsql sends
/// it to PostgreSQL unprepared each time, as before (it prepares only when asked).
/// </summary>
internal static class PurseSql
{
    private static readonly ConditionalWeakTable<DbConnection, Dictionary<string, DbCommand>> Kept = new();

    /// <summary>
    /// Keeps the statements run on <paramref name="c"/> prepared until the scope is disposed (their
    /// commands are disposed with it). One thread uses a connection at a time, as ADO.NET requires.
    /// </summary>
    public static IDisposable KeepStatements(DbConnection c)
    {
        var statements = new Dictionary<string, DbCommand>(StringComparer.Ordinal);
        Kept.AddOrUpdate(c, statements);
        return new Scope(c, statements);
    }

    public static void Execute(DbConnection c, DbTransaction? tx, string sql, params (string, object)[] parameters)
    {
        var cmd = Command(c, tx, sql, parameters, out var kept);
        try
        {
            cmd.ExecuteNonQuery();
        }
        finally
        {
            if (!kept) cmd.Dispose();
        }
    }

    /// <summary>The first column of the first row, or null when there is none (or it is NULL).</summary>
    public static object? Scalar(DbConnection c, DbTransaction? tx, string sql, params (string, object)[] parameters)
    {
        var cmd = Command(c, tx, sql, parameters, out var kept);
        try
        {
            return cmd.ExecuteScalar() is { } value and not DBNull ? value : null;
        }
        finally
        {
            if (!kept) cmd.Dispose();
        }
    }

    /// <summary>The first row read by <paramref name="read"/>, or null when there is none.</summary>
    public static T? Row<T>(DbConnection c, DbTransaction? tx, string sql, Func<DbDataReader, T> read, params (string, object)[] parameters) where T : struct
    {
        var cmd = Command(c, tx, sql, parameters, out var kept);
        try
        {
            using var r = cmd.ExecuteReader();
            return r.Read() ? read(r) : null;
        }
        finally
        {
            if (!kept) cmd.Dispose();
        }
    }

    public static void Add(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }

    private static DbCommand Command(DbConnection c, DbTransaction? tx, string sql, (string, object)[] parameters, out bool kept)
    {
        DbCommand? cmd = null;
        kept = Kept.TryGetValue(c, out var statements);
        if (kept && statements!.TryGetValue(sql, out cmd) && SameNames(cmd.Parameters, parameters))
        {
            // The same text with the same parameters: only their values change.
            for (var i = 0; i < parameters.Length; i++) cmd.Parameters[i].Value = parameters[i].Item2;
        }
        else
        {
            cmd?.Dispose();
            cmd = c.CreateCommand();
            cmd.CommandText = sql;
            foreach (var (k, v) in parameters) Add(cmd, k, v);
            if (kept) statements![sql] = cmd;
        }
        cmd.Transaction = tx;
        return cmd;
    }

    private static bool SameNames(DbParameterCollection kept, (string, object)[] parameters)
    {
        if (kept.Count != parameters.Length) return false;
        for (var i = 0; i < parameters.Length; i++)
        {
            if (kept[i].ParameterName != parameters[i].Item1) return false;
        }
        return true;
    }

    private sealed class Scope(DbConnection c, Dictionary<string, DbCommand> statements) : IDisposable
    {
        public void Dispose()
        {
            Kept.Remove(c);
            foreach (var cmd in statements.Values) cmd.Dispose();
            statements.Clear();
        }
    }
}
