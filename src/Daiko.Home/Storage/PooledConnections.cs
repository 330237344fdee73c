using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Daiko.Home.Storage;

/// <summary>
/// Opening a connection from a PostgreSQL pool that may be in use to its last connection (a hosted node
/// under load): Npgsql waits up to the connection string's Timeout for one to come back; when none did,
/// this says so in the log and waits again, <see cref="Waits"/> times in all, before failing with
/// Npgsql's own exception (a <see cref="System.Data.Common.DbException"/>, which every poller and owner
/// load treats as a passing database failure and tries again) after logging what to change.
/// </summary>
public static partial class PooledConnections
{
    public const int Waits = 3;

    /// <summary>Where running out is logged (a node sets its own; otherwise nowhere).</summary>
    public static ILogger Logger { get; set; } = NullLogger.Instance;

    public static async Task<NpgsqlConnection> OpenAsync(NpgsqlDataSource source, CancellationToken cancellationToken)
    {
        for (var wait = 1; ; wait++)
        {
            try
            {
                return await source.OpenConnectionAsync(cancellationToken);
            }
            catch (NpgsqlException e) when (Exhausted(e))
            {
                if (GaveUp(source, wait)) throw;
            }
        }
    }

    public static NpgsqlConnection Open(NpgsqlDataSource source)
    {
        for (var wait = 1; ; wait++)
        {
            try
            {
                return source.OpenConnection();
            }
            catch (NpgsqlException e) when (Exhausted(e))
            {
                if (GaveUp(source, wait)) throw;
            }
        }
    }

    private static bool Exhausted(NpgsqlException e) => e.InnerException is TimeoutException && e.Message.Contains("pool has been exhausted", StringComparison.Ordinal);

    private static bool GaveUp(NpgsqlDataSource source, int wait)
    {
        var settings = new NpgsqlConnectionStringBuilder(source.ConnectionString);
        if (wait >= Waits)
        {
            Logger.PoolGaveUp(settings.MaxPoolSize, wait * settings.Timeout);
            return true;
        }
        Logger.PoolExhausted(settings.MaxPoolSize, settings.Timeout);
        return false;
    }

    [LoggerMessage(63, LogLevel.Warning, "all {PoolSize} database connections were in use for {Seconds} s; waiting again for one")]
    private static partial void PoolExhausted(this ILogger logger, int poolSize, int seconds);

    // Session mode only: an owner's schema (search_path) and the purse's lock are session state, which a pooler in
    // transaction or statement mode would hand to another client's statements.
    [LoggerMessage(64, LogLevel.Error, "all {PoolSize} database connections stayed in use for {Seconds} s; the request fails (raise Maximum Pool Size in the connection file, within PostgreSQL's max_connections; a pooler such as PgBouncer may be put in front in session mode only, never transaction or statement mode)")]
    private static partial void PoolGaveUp(this ILogger logger, int poolSize, int seconds);
}
