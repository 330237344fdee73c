using System.Globalization;

namespace Daiko.Home.Storage;

/// <summary>
/// What a hosted node asks of each PostgreSQL session it uses, so that a node that vanishes (power lost, cut off by
/// the network, hung in an HSM call) lets go of an owner's card row lock, purse lock or exclusive scope within about a
/// minute. Without them the server keeps the session, and every lock in it, until the operating system's own TCP
/// keepalive gives up: two hours and more by default. A killed process closes its socket and needs none of this.
/// </summary>
/// <param name="IdleInTransaction">
/// How long the server lets a transaction wait for the node's next statement before it ends the session (and rolls
/// the transaction back). Long enough for the waits a live node has inside a transaction: an HSM signature or HMAC
/// while the card row is held, and the purse's signatures before its commit, which take milliseconds and, on a busy
/// network HSM, a few seconds.
/// </param>
/// <param name="KeepaliveIdle">Quiet time on the link before the server sends its first TCP keepalive probe.</param>
/// <param name="KeepaliveInterval">Time between unanswered probes.</param>
/// <param name="KeepaliveCount">Unanswered probes after which the server takes the node for gone and ends its session.</param>
/// <param name="UnacknowledgedData">
/// How long data the server sent may stay unacknowledged before it ends the session: keepalives probe only a quiet
/// link, and a node that vanished while the server was still sending it rows (or a notice) would otherwise be tried
/// again for the kernel's retransmission time, a quarter of an hour.
/// </param>
public sealed record PostgresSessionLimits(TimeSpan IdleInTransaction, TimeSpan KeepaliveIdle, TimeSpan KeepaliveInterval, int KeepaliveCount, TimeSpan UnacknowledgedData)
{
    /// <summary>A vanished node's session ends within about a minute: 30 s quiet, then 3 probes 10 s apart (or 60 s of unacknowledged data); a transaction left waiting, after 60 s.</summary>
    public static PostgresSessionLimits Hosted { get; } = new(TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(10), 3, TimeSpan.FromSeconds(60));

    /// <summary>
    /// <paramref name="connectionString"/> with these settings in its startup options (<c>-c name=value</c>), after any it
    /// had: the server applies them when each physical connection starts, as the session's own defaults, so Npgsql's reset
    /// of a pooled connection (DISCARD ALL) keeps them, and taking a connection from the pool costs no round trip more
    /// (setting them at each take did, and under a 3-node load that held connections long enough to exhaust the server's).
    /// A PgBouncer in front must let these startup parameters through (<c>ignore_startup_parameters</c> lists them, or
    /// set them on its server side instead). Over a Unix socket the server takes the keepalive settings and ignores them.
    /// </summary>
    public string WithStartupOptions(string connectionString)
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
        var ours = string.Create(CultureInfo.InvariantCulture,
            $"-c idle_in_transaction_session_timeout={(long)IdleInTransaction.TotalMilliseconds} -c tcp_keepalives_idle={(long)KeepaliveIdle.TotalSeconds} "
            + $"-c tcp_keepalives_interval={(long)KeepaliveInterval.TotalSeconds} -c tcp_keepalives_count={KeepaliveCount} -c tcp_user_timeout={(long)UnacknowledgedData.TotalMilliseconds}");
        builder.Options = string.IsNullOrWhiteSpace(builder.Options) ? ours : builder.Options + " " + ours;
        return builder.ConnectionString;
    }
}
