using System.Data.Common;
using System.Globalization;
using Daiko.Home.Policy;
using Npgsql;

namespace Daiko.Home.Storage;

/// <summary>
/// <see cref="ITicketHoldings"/> kept in the home store, so that every process serving an owner's devices counts the
/// same tickets. The nodes of a hosted deployment (or of a home on PostgreSQL) each hand tickets to whichever devices'
/// channels the load balancer sends their way; counted in each process's memory, a device whose channels reach several
/// nodes could hold its max-tickets from each.
/// </summary>
/// <remarks>
/// A place is a row: inserted with a placeholder expiry (<see cref="ReservedFor"/>) when reserved, given the ticket's
/// own expiry when it is handed over, deleted when it is given back. Reservations for one device and market run one at a
/// time across processes (on PostgreSQL a transaction-scoped advisory lock on the schema, device and market, taken in the
/// reservation's one batch; on SQLite BEGIN IMMEDIATE), so two nodes cannot both take the last place. On PostgreSQL these
/// writes commit without waiting for the disk (as the bookkeeping's do): a database that crashes may forget the places of
/// its last fraction of a second, and the devices that held them may take that many more. Expiries are judged by the
/// clock of the process that writes or reads them (the nodes' clocks are taken to agree, as for every other expiry).
/// </remarks>
public sealed class StoredTicketHoldings(IHomeStore store, TimeProvider time) : ITicketHoldings
{
    internal static readonly Migration Migration = new("device_tickets/1", """
        CREATE TABLE device_tickets (place TEXT PRIMARY KEY, device_id TEXT NOT NULL, market TEXT NOT NULL, expires_ms {bigint} NOT NULL);
        CREATE INDEX device_tickets_held ON device_tickets(device_id, market, expires_ms);
        CREATE INDEX device_tickets_expiry ON device_tickets(expires_ms);
        """);

    /// <summary>
    /// How long a reserved place counts before its ticket is handed over: longer than a request waits for a ticket (a
    /// full handshake in its turn), and the time a process that died holding a place keeps it from its device.
    /// </summary>
    public static readonly TimeSpan ReservedFor = TimeSpan.FromMinutes(2);

    /// <summary>How often this process deletes every device's expired rows (counts pass over them until then).</summary>
    private static readonly TimeSpan SweepEvery = TimeSpan.FromMinutes(1);

    private long _sweptAtMs;

    public Task<ITicketPlace> ReserveAsync(string deviceId, string market, int max, CancellationToken cancellationToken) =>
        ReserveAsync(deviceId, market, max, handedUntil: null, cancellationToken);

    public Task<ITicketPlace> ReserveHandedAsync(string deviceId, string market, int max, DateTimeOffset expiresAt, CancellationToken cancellationToken) =>
        ReserveAsync(deviceId, market, max, expiresAt, cancellationToken);

    /// <summary>A place with a placeholder expiry (<see cref="ReservedFor"/>), or, for a ticket in hand, its own.</summary>
    private async Task<ITicketPlace> ReserveAsync(string deviceId, string market, int max, DateTimeOffset? handedUntil, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var place = Guid.NewGuid().ToString("N");
        var reservedUntil = handedUntil?.ToUnixTimeMilliseconds() ?? now + (long)ReservedFor.TotalMilliseconds;
        var (connection, searchPath) = await store.OpenForOneBatchAsync(Migration, cancellationToken);
        await using (connection)
        {
            (bool Inserted, int Held) reserved;
            try
            {
                // Not cancelled once sent: a reservation committed but not known to its caller would count until it lapses.
                reserved = connection is NpgsqlConnection postgres
                    ? await ReserveOnPostgresAsync(postgres, searchPath, place, deviceId, market, max, now, reservedUntil, CancellationToken.None)
                    : await ReserveInTransactionAsync(connection, place, deviceId, market, max, now, reservedUntil, CancellationToken.None);
            }
            catch (Exception) when (handedUntil is not null)
            {
                // Perhaps committed, its answer lost: a place with the ticket's own expiry (not a placeholder's two minutes)
                // would keep the device one short until then, while the ticket goes back to the cache. Deleted, best effort.
                await Delete(store, place);
                throw;
            }
            if (!reserved.Inserted) throw TicketHoldings.Full(reserved.Held, market);
        }
        SweepIfDue(now);
        return new Place(store, place, deviceId, market, handed: handedUntil is not null);
    }

    /// <summary>
    /// One batch, one round trip: its statements run in one implicit transaction (the owner's search path set for it
    /// alone), the advisory lock (one per owner's schema, device and market, across nodes) held from its second statement
    /// to its end, and committed without waiting for the disk. Expired rows are not counted (the sweep deletes them).
    /// </summary>
    private static async Task<(bool Inserted, int Held)> ReserveOnPostgresAsync(NpgsqlConnection connection, string? searchPath, string place, string deviceId, string market, int max,
        long now, long reservedUntil, CancellationToken cancellationToken)
    {
        await using var batch = Batch(connection, searchPath,
            Statement("SELECT pg_advisory_xact_lock(hashtext('daiko tickets'), hashtext(current_schema() || '/' || @d || '/' || @m))", ("@d", deviceId), ("@m", market)),
            Statement(SkipTheDisk),
            Statement(CountAndInsertUnderMax, ("@p", place), ("@d", deviceId), ("@m", market), ("@e", reservedUntil), ("@now", now), ("@max", (long)max)));
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        // The last statement's result (the count and the insert), whichever statements before it returned rows.
        while (reader.FieldCount != 2 || !await reader.ReadAsync(cancellationToken))
        {
            if (!await reader.NextResultAsync(cancellationToken)) throw new InvalidOperationException("the ticket count returned no row");
        }
        return (reader.GetInt64(1) == 1, (int)reader.GetInt64(0));
    }

    /// <summary>
    /// On PostgreSQL: the unexpired places the device holds for the market, and whether a new one was inserted (only
    /// while they are fewer than @max) — one statement, so that a refusal's count costs no second round trip.
    /// </summary>
    private const string CountAndInsertUnderMax = """
        WITH held AS (SELECT COUNT(*) AS n FROM device_tickets WHERE device_id = @d AND market = @m AND expires_ms > @now),
             taken AS (INSERT INTO device_tickets(place, device_id, market, expires_ms) SELECT @p, @d, @m, @e FROM held WHERE n < @max RETURNING 1)
        SELECT n, (SELECT COUNT(*) FROM taken) FROM held
        """;

    /// <summary>On SQLite (which has no INSERT in a WITH): a place, inserted only while the device holds fewer than @max unexpired ones for the market.</summary>
    private const string InsertUnderMax = """
        INSERT INTO device_tickets(place, device_id, market, expires_ms) SELECT @p, @d, @m, @e
        WHERE (SELECT COUNT(*) FROM device_tickets WHERE device_id = @d AND market = @m AND expires_ms > @now) < @max
        """;

    /// <summary>In a batch on PostgreSQL: this transaction's commit does not wait for the disk (as the bookkeeping's, <see cref="GroupedWrites"/>).</summary>
    private const string SkipTheDisk = "SELECT set_config('synchronous_commit', 'off', true)";

    private static NpgsqlBatchCommand Statement(string sql, params (string Name, object? Value)[] parameters)
    {
        var statement = new NpgsqlBatchCommand(sql);
        foreach (var (name, value) in parameters) statement.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return statement;
    }

    /// <summary>A batch of <paramref name="statements"/>, after the one that sets the owner's <paramref name="searchPath"/> for its transaction (when there is one).</summary>
    private static NpgsqlBatch Batch(NpgsqlConnection connection, string? searchPath, params NpgsqlBatchCommand[] statements)
    {
        var batch = new NpgsqlBatch(connection);
        if (searchPath is not null) batch.BatchCommands.Add(Statement("SELECT set_config('search_path', @path, true)", ("@path", searchPath)));
        foreach (var statement in statements) batch.BatchCommands.Add(statement);
        return batch;
    }

    /// <summary>
    /// One statement, committed without waiting for the disk on PostgreSQL (the owner's search path, the setting and the
    /// statement in one batch: one round trip, one implicit transaction); as it is on SQLite.
    /// </summary>
    private static async Task ExecuteLazilyAsync(IHomeStore store, string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        var (connection, searchPath) = await store.OpenForOneBatchAsync(Migration, cancellationToken);
        await using (connection)
        {
            if (connection is not NpgsqlConnection postgres)
            {
                await StoreCommands.ExecuteAsync(connection, null, sql, cancellationToken, parameters);
                return;
            }
            await using var batch = Batch(postgres, searchPath, Statement(SkipTheDisk), Statement(sql, parameters));
            await batch.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    /// <summary>The same on SQLite (one writer per file: BEGIN IMMEDIATE).</summary>
    private async Task<(bool Inserted, int Held)> ReserveInTransactionAsync(DbConnection connection, string place, string deviceId, string market, int max,
        long now, long reservedUntil, CancellationToken cancellationToken)
    {
        await using var transaction = await store.BeginExclusiveAsync(connection, $"tickets/{deviceId}/{market}", cancellationToken);
        var inserted = await StoreCommands.ExecuteAsync(connection, transaction, InsertUnderMax, cancellationToken,
            ("@p", place), ("@d", deviceId), ("@m", market), ("@e", reservedUntil), ("@now", now), ("@max", (long)max)) == 1;
        var held = inserted ? 0 : await CountAsync(connection, transaction, deviceId, market, now, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return (inserted, held);
    }

    public async Task<int> RoomForAsync(string deviceId, string market, int max, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return TicketHoldings.RoomLeft(await CountAsync(connection, null, deviceId, market, time.GetUtcNow().ToUnixTimeMilliseconds(), cancellationToken), max, market);
    }

    private static async Task<int> CountAsync(DbConnection connection, DbTransaction? transaction, string deviceId, string market, long now, CancellationToken cancellationToken) =>
        Convert.ToInt32(await StoreCommands.ScalarAsync(connection, transaction, "SELECT COUNT(*) FROM device_tickets WHERE device_id = @d AND market = @m AND expires_ms > @now",
            cancellationToken, ("@d", deviceId), ("@m", market), ("@now", now)), CultureInfo.InvariantCulture);

    /// <summary>
    /// Rows of devices that stopped asking would otherwise stay: once a minute every expired row goes, beside the request
    /// that found it due (not in its way, and not its failure when the store is out of reach: the next is a minute later).
    /// </summary>
    private void SweepIfDue(long now)
    {
        var swept = Volatile.Read(ref _sweptAtMs);
        if (now - swept < (long)SweepEvery.TotalMilliseconds || Interlocked.CompareExchange(ref _sweptAtMs, now, swept) != swept) return;
        _ = Task.Run(() => BestEffortAsync(ct => ExecuteLazilyAsync(store, "DELETE FROM device_tickets WHERE expires_ms <= @now", ct, ("@now", now))));
    }

    /// <summary>Deletes a place, best effort (what it leaves lapses at its expiry).</summary>
    private static Task Delete(IHomeStore store, string place) =>
        BestEffortAsync(ct => ExecuteLazilyAsync(store, "DELETE FROM device_tickets WHERE place = @p", ct, ("@p", place)));

    /// <summary>How long a write that only gives room back may take before it is left undone.</summary>
    private static readonly TimeSpan BestEffortFor = TimeSpan.FromSeconds(5);

    /// <summary>Runs a write that only gives room back: bounded in time, and never an error of its own (what it leaves lapses by itself).</summary>
    private static async Task BestEffortAsync(Func<CancellationToken, Task> write)
    {
        try
        {
            using var bounded = new CancellationTokenSource(BestEffortFor);
            await write(bounded.Token);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The store is out of reach, or slow: the place or the expired rows stay until their expiry or the next sweep,
            // counting one ticket too many rather than one too few.
        }
    }

    private sealed class Place(IHomeStore store, string place, string deviceId, string market, bool handed) : ITicketPlace
    {
        private bool _done = handed;

        public async Task HandedAsync(DateTimeOffset expiresAt, CancellationToken cancellationToken)
        {
            if (_done) return;
            // Inserted again if a sweep took the placeholder meanwhile (a ticket that took longer than ReservedFor to come).
            await ExecuteLazilyAsync(store, """
                INSERT INTO device_tickets(place, device_id, market, expires_ms) VALUES (@p, @d, @m, @e)
                ON CONFLICT(place) DO UPDATE SET expires_ms = @e
                """, cancellationToken, ("@p", place), ("@d", deviceId), ("@m", market), ("@e", expiresAt.ToUnixTimeMilliseconds()));
            _done = true;
        }

        public async ValueTask DisposeAsync()
        {
            if (_done) return;
            _done = true;
            await DeleteAsync();
        }

        public Task GiveBackAsync() => _done ? DeleteAsync() : Task.CompletedTask;

        /// <summary>Deletes the place (a placeholder lapses by itself after <see cref="ReservedFor"/>, a handed ticket at its expiry).</summary>
        private Task DeleteAsync() => Delete(store, place);
    }
}
