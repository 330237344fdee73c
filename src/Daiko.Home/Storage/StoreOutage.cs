using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Daiko.Home.Storage;

/// <summary>
/// Failures that say the store cannot serve just now (PostgreSQL down, restarting, out of connections or
/// timing out; SQLite busy past its timeout, out of disk, or its file unreadable), as opposed to a fault in
/// what was asked of it. A request that meets one is answered <c>unavailable</c>, to be tried again. What
/// the request had done before it met the outage stays done (a PIN try counted, a payment committed whose
/// audit line could not be written): the sentence says so, and the purse's request ids make a payment
/// sent again one payment.
/// </summary>
public static partial class StoreOutage
{
    /// <summary>The one sentence a terminal is told.</summary>
    public const string Sentence = "the home server cannot reach its store just now (down, restarting or overloaded); this request may have been done in part: try again shortly";

    /// <summary>How often a process says, per kind of request, that requests met the outage.</summary>
    public static readonly TimeSpan SayEvery = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Which of the requests that met an outage are logged: the first of a kind (a request type, a connection), then at
    /// most one every <see cref="SayEvery"/> a kind, each saying how many went unsaid before it, so that terminals (or
    /// strangers) asking during an outage cannot fill the log. The limiter strangers' refusals are written through, with
    /// no cap over all kinds (their number is the protocol's).
    /// </summary>
    private static readonly Devices.StrangerRefusals Said = new(window: SayEvery, maxLinesPerWindow: int.MaxValue);

    /// <summary>Logs that a request of <paramref name="kind"/> met the store unavailable, at most once every <see cref="SayEvery"/> a kind.</summary>
    public static void Log(ILogger logger, string kind, Exception outage)
    {
        if (Said.Note(kind) is (true, var unsaid)) logger.RequestMetOutage(kind, unsaid, outage.GetBaseException().Message);
    }

    [LoggerMessage(24, LogLevel.Warning, "a control request '{Kind}' met the store unavailable (answered 'unavailable'; {Unsaid} more such requests not logged before this line): {Reason}")]
    private static partial void RequestMetOutage(this ILogger logger, string kind, int unsaid, string reason);

    public static bool Is(Exception exception) => exception switch
    {
        // A cancellation is the caller's, whatever it interrupted.
        OperationCanceledException => false,
        NpgsqlException npgsql when npgsql.IsTransient => true,
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN (primary codes).
        SqliteException sqlite when (sqlite.SqliteErrorCode & 0xff) is 5 or 6 or 10 or 13 or 14 => true,
        AggregateException aggregate => aggregate.InnerExceptions.Count > 0 && aggregate.InnerExceptions.All(Is),
        { InnerException: { } inner } => Is(inner),
        _ => false,
    };
}
