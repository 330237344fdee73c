using Microsoft.Data.Sqlite;
using Npgsql;

namespace Daiko.Home.Storage;

/// <summary>
/// Failures that say the store cannot be reached or written just now (PostgreSQL down, restarting or out
/// of connections; SQLite busy past its timeout, out of disk, or its file unreadable), as opposed to a
/// fault in what was asked of it. A request that meets one is answered <c>unavailable</c>, to be tried
/// again; nothing it asked for was acknowledged.
/// </summary>
public static class StoreOutage
{
    /// <summary>The one sentence a terminal is told.</summary>
    public const string Sentence = "the home server cannot reach its store just now; nothing of this request was acknowledged: try again shortly";

    public static bool Is(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case NpgsqlException npgsql when npgsql.IsTransient:
                    return true;
                // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN (primary codes).
                case SqliteException sqlite when (sqlite.SqliteErrorCode & 0xff) is 5 or 6 or 10 or 13 or 14:
                    return true;
            }
        }
        return false;
    }
}
