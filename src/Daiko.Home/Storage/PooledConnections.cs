using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Daiko.Home.Storage;

/// <summary>
/// Opening a connection from a PostgreSQL pool that may be in use to its last connection (a hosted node
/// under load): Npgsql waits up to the connection string's Timeout for one to come back; when none did,
/// this says so in the log and waits again, <see cref="Waits"/> times in all, before failing with a
/// sentence that names the pool's size and what to change.
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
                Ran(source, wait, e);
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
                Ran(source, wait, e);
            }
        }
    }

    private static bool Exhausted(NpgsqlException e) => e.InnerException is TimeoutException && e.Message.Contains("pool has been exhausted", StringComparison.Ordinal);

    private static void Ran(NpgsqlDataSource source, int wait, NpgsqlException e)
    {
        var settings = new NpgsqlConnectionStringBuilder(source.ConnectionString);
        if (wait >= Waits)
        {
            Logger.PoolGaveUp(settings.MaxPoolSize, wait * settings.Timeout);
            throw new InvalidOperationException($"All {settings.MaxPoolSize} database connections of this process stayed in use for {wait * settings.Timeout} s; raise Maximum Pool Size in the connection file (and max_connections in PostgreSQL), or put PgBouncer in front of the database.", e);
        }
        Logger.PoolExhausted(settings.MaxPoolSize, settings.Timeout);
    }

    [LoggerMessage(63, LogLevel.Warning, "all {PoolSize} database connections were in use for {Seconds} s; waiting again for one")]
    private static partial void PoolExhausted(this ILogger logger, int poolSize, int seconds);

    [LoggerMessage(64, LogLevel.Error, "all {PoolSize} database connections stayed in use for {Seconds} s; the request fails (raise Maximum Pool Size in the connection file, or add PgBouncer)")]
    private static partial void PoolGaveUp(this ILogger logger, int poolSize, int seconds);
}
