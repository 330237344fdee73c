using System.Collections.Concurrent;
using System.Data.Common;
using Npgsql;

namespace Daiko.Home.Storage;

/// <summary>Which SQL database a store speaks; repositories write one SQL text and let the dialect fill in the few types that differ.</summary>
public enum HomeDialect
{
    Sqlite,
    Postgres,
}

/// <summary>
/// The root of the home server's state: one async repository per concern, all on one database
/// (SQLite, the embedded default, or PostgreSQL for hosted deployments). The purse ledger still runs
/// its own transactions on <see cref="Open"/> with <see cref="Schema"/>.
/// </summary>
public interface IHomeStore
{
    HomeDialect Dialect { get; }

    /// <summary>A connection for the purse ledger's synchronous transactions.</summary>
    DbConnection Open();

    /// <summary>The purse's schema, in this database's dialect (idempotent: CREATE … IF NOT EXISTS).</summary>
    string Schema { get; }

    /// <summary>
    /// One row: how many times rows of the purse log were updated or deleted, and how many of this
    /// store's edit-counting triggers are missing or disabled (0 when all are in place).
    /// </summary>
    string PurseLogEditsQuery { get; }

    /// <summary>An open connection on which <paramref name="migration"/> (when given) has been applied.</summary>
    Task<DbConnection> OpenAsync(Migration? migration = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// For one batch on PostgreSQL: a connection on which <paramref name="migration"/> has been applied but whose search
    /// path is not yet set, and the path (the owner's schema, quoted) that the batch's first statement must set for its
    /// own transaction (<c>set_config('search_path', …, true)</c>); null where the store needs none (SQLite, a home's own
    /// PostgreSQL database: the connection is <see cref="OpenAsync"/>'s). The owner's search path then rides in the
    /// batch instead of costing a round trip of its own. The connection is for that one batch only.
    /// </summary>
    Task<(DbConnection Connection, string? SearchPath)> OpenForOneBatchAsync(Migration migration, CancellationToken cancellationToken = default);

    /// <summary>
    /// A transaction that no other writer of <paramref name="scope"/> runs beside: SQLite's BEGIN
    /// IMMEDIATE (one writer per file), a transaction-scoped advisory lock on PostgreSQL (one per
    /// scope, across nodes). For read-modify-write work such as assigning the next revision.
    /// </summary>
    Task<DbTransaction> BeginExclusiveAsync(DbConnection connection, string scope, CancellationToken cancellationToken = default);

    /// <summary>
    /// Holds the purse's writer lock on <paramref name="connection"/> until disposed; take it before the
    /// purse's serializable transaction begins. On PostgreSQL a session advisory lock per schema: the
    /// nodes of a hosted deployment paying from one purse then queue instead of all but one failing
    /// with a serialization failure (a transaction's snapshot is taken at its first statement, so a lock
    /// taken inside it comes too late). SQLite has one writer per file already: nothing to hold.
    /// </summary>
    IDisposable LockPurse(DbConnection connection);

    /// <summary>
    /// The bookkeeping's small writes (audit lines, the devices' last use, sessions' last touch): they
    /// share commits, and reach the disk within a second of theirs (<see cref="GroupedWrites"/>).
    /// </summary>
    GroupedWrites Writes { get; }

    IDeviceStore Devices { get; }

    IEnrollmentCodeStore EnrollmentCodes { get; }

    IAuditStore Audit { get; }

    IMarketProfileStore MarketProfiles { get; }

    IPimStore Pim { get; }

    IMailOutboxStore MailOutbox { get; }

    IApplianceStore Appliances { get; }
}

/// <summary>
/// The two stores: SQLite (home.db in the home directory, WAL, full fsync on commit) or PostgreSQL
/// (several home-server nodes on one database). Schema changes are versioned <see cref="Migration"/>s,
/// recorded in <c>schema_migrations</c> and applied once per database.
/// </summary>
public abstract class HomeStore : IHomeStore
{
    private readonly ConcurrentDictionary<string, Task> _applied = new(StringComparer.Ordinal);

    protected HomeStore()
    {
        Writes = new GroupedWrites(OpenBookkeepingAsync, BeginBookkeepingAsync, BookkeepingFlush);
        Devices = new SqlDeviceStore(this);
        EnrollmentCodes = new SqlEnrollmentCodeStore(this);
        Audit = new SqlAuditStore(this);
        MarketProfiles = new SqlMarketProfileStore(this);
        Pim = new SqlPimStore(this);
        MailOutbox = new SqlMailOutboxStore(this);
        Appliances = new SqlApplianceStore(this);
    }

    public static HomeStore Sqlite(string databasePath) => new SqliteHomeStore(databasePath);

    /// <summary>The file in a home directory whose presence moves all of its state to PostgreSQL: it holds the connection string (0600).</summary>
    public const string PostgresFileName = "postgres";

    /// <summary>
    /// A home directory's store, the same for the server and every owner command: PostgreSQL when
    /// DIR/postgres holds a connection string (<c>home serve --postgres-file</c> writes it), else the
    /// SQLite home.db.
    /// </summary>
    public static HomeStore ForHome(string directory)
    {
        var file = Path.Combine(directory, PostgresFileName);
        return File.Exists(file) ? Postgres(File.ReadAllText(file).Trim()) : Sqlite(Path.Combine(directory, "home.db"));
    }

    public static HomeStore Postgres(string connectionString) => new PostgresHomeStore(NpgsqlDataSource.Create(connectionString), null);

    /// <summary>
    /// One owner's store in a hosted deployment: every table in the PostgreSQL schema
    /// <paramref name="schema"/> (each connection's search_path is that schema alone), on a data source
    /// shared by all owners of a node (whose sessions the node holds to <see cref="PostgresSessionLimits.Hosted"/> from their start). The schema must exist.
    /// </summary>
    public static HomeStore Postgres(NpgsqlDataSource source, string schema) => new PostgresHomeStore(source, schema);

    public abstract HomeDialect Dialect { get; }

    public abstract DbConnection Open();

    /// <summary>The purse's tables (its ledger creates them itself, outside the versioned migrations).</summary>
    private static readonly Migration PurseSchema = new("purse/1", """
        CREATE TABLE IF NOT EXISTS purse_balances (currency TEXT PRIMARY KEY, amount {bigint} NOT NULL CHECK (amount >= 0));
        CREATE TABLE IF NOT EXISTS purse_log (seq {bigint} PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
            amount {bigint} NOT NULL, currency TEXT NOT NULL, balance_after {bigint} NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS purse_answers (request_id TEXT PRIMARY KEY, answer {blob} NOT NULL);
        CREATE TABLE IF NOT EXISTS purse_payments (payment_id TEXT PRIMARY KEY, market TEXT NOT NULL, amount {bigint} NOT NULL,
            currency TEXT NOT NULL, at TEXT NOT NULL, state TEXT NOT NULL, market_url TEXT);
        CREATE TABLE IF NOT EXISTS purse_payers (payment_id TEXT PRIMARY KEY, device TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS purse_seal (id INTEGER PRIMARY KEY CHECK (id = 1), counter {bigint} NOT NULL, seal {blob} NOT NULL);
        CREATE TABLE IF NOT EXISTS purse_requests (kind TEXT NOT NULL, party TEXT NOT NULL, id TEXT NOT NULL, message_hash TEXT NOT NULL,
            answer {blob} NOT NULL, PRIMARY KEY (kind, party, id));
        CREATE TABLE IF NOT EXISTS purse_log_edits (id INTEGER PRIMARY KEY CHECK (id = 1), edits {bigint} NOT NULL);
        INSERT INTO purse_log_edits(id, edits) VALUES (1, 0) ON CONFLICT(id) DO NOTHING;
        """);

    /// <summary>
    /// The ledger only inserts log rows: a trigger counts every update or delete of one, so a change in
    /// the count sends the next operation to a whole-chain check (the dialects' trigger syntax differs).
    /// </summary>
    private const string SqliteLogEditTriggers = """
        CREATE TRIGGER IF NOT EXISTS purse_log_updated AFTER UPDATE ON purse_log BEGIN UPDATE purse_log_edits SET edits = edits + 1 WHERE id = 1; END;
        CREATE TRIGGER IF NOT EXISTS purse_log_deleted AFTER DELETE ON purse_log BEGIN UPDATE purse_log_edits SET edits = edits + 1 WHERE id = 1; END;
        """;

    private const string PostgresLogEditTriggers = """
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'purse_log_edited' AND tgrelid = to_regclass('purse_log')) THEN
                CREATE OR REPLACE FUNCTION purse_log_edited() RETURNS trigger LANGUAGE plpgsql AS $f$
                    BEGIN UPDATE purse_log_edits SET edits = edits + 1 WHERE id = 1; RETURN NULL; END $f$;
                CREATE TRIGGER purse_log_edited AFTER UPDATE OR DELETE OR TRUNCATE ON purse_log FOR EACH STATEMENT EXECUTE FUNCTION purse_log_edited();
            END IF;
        END $$;
        """;

    // The PostgreSQL trigger is looked up on this store's own purse_log (resolved through search_path):
    // in a hosted deployment every owner's schema has a trigger of the same name.
    public string PurseLogEditsQuery => Dialect == HomeDialect.Sqlite
        ? "SELECT (SELECT edits FROM purse_log_edits WHERE id = 1), 2 - (SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ('purse_log_updated', 'purse_log_deleted'))"
        : "SELECT (SELECT edits FROM purse_log_edits WHERE id = 1), 1 - (SELECT COUNT(*) FROM pg_trigger WHERE tgname = 'purse_log_edited' AND tgrelid = to_regclass('purse_log') AND tgenabled <> 'D')";

    public string Schema => Dialect == HomeDialect.Sqlite
        ? PurseSchema.Sql(Dialect) + "\n" + PurseLogByRef + "\n" + SqliteLogEditTriggers
        : PurseSchema.Sql(Dialect) + "\n" + PurseLogByRef + "\n" + PostgresLogEditTriggers;

    /// <summary>A cancellation finds its payment's log entry by its reference (<c>PurseLog.Payment</c>), not by a scan of the log.</summary>
    private const string PurseLogByRef = "CREATE INDEX IF NOT EXISTS purse_log_ref ON purse_log(ref);";

    public GroupedWrites Writes { get; }

    public IDeviceStore Devices { get; }

    public IEnrollmentCodeStore EnrollmentCodes { get; }

    public IAuditStore Audit { get; }

    public IMarketProfileStore MarketProfiles { get; }

    public IPimStore Pim { get; }

    public IMailOutboxStore MailOutbox { get; }

    public IApplianceStore Appliances { get; }

    /// <summary>Every repository's migration, in order: what <see cref="MigrateAsync"/> applies.</summary>
    public static IReadOnlyList<Migration> Migrations { get; } =
    [
        SqlDeviceStore.Migration, SqlEnrollmentCodeStore.Migration, SqlEnrollmentCodeStore.PublicIdMigration, SqlEnrollmentCodeStore.ReplacedMigration, SqlAuditStore.Migration, SqlMarketProfileStore.Migration,
        SqlPimStore.Migration, SqlPimStore.UsageMigration, SqlPimStore.UsageTriggersMigration, SqlPimStore.HorizonMigration, SqlMailOutboxStore.Migration, SqlMailOutboxStore.ClaimMigration, SqlApplianceStore.Migration,
        SqlDevicePolicyStore.Migration, SqlDevicePolicyStore.PayeesMigration, StoredTicketHoldings.Migration,
    ];

    /// <summary>Applies every migration not yet recorded (what a hosted deployment runs before starting nodes).</summary>
    public async Task MigrateAsync(CancellationToken cancellationToken = default)
    {
        foreach (var migration in Migrations)
        {
            await using var connection = await OpenAsync(migration, cancellationToken);
        }
    }

    protected abstract Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken);

    /// <summary>A connection for the grouped bookkeeping writes (a handle that commits without waiting for the disk, on SQLite).</summary>
    protected virtual Task<DbConnection> OpenBookkeepingAsync(CancellationToken cancellationToken) => OpenConnectionAsync(cancellationToken);

    /// <summary>Begins a transaction of grouped bookkeeping writes (one whose commit does not wait for the disk, on PostgreSQL).</summary>
    protected virtual async Task<DbTransaction> BeginBookkeepingAsync(DbConnection connection, CancellationToken cancellationToken) =>
        await connection.BeginTransactionAsync(cancellationToken);

    /// <summary>
    /// Flushes the bookkeeping's commits to the disk, where this store does it itself (SQLite); null where
    /// its database server does (PostgreSQL).
    /// </summary>
    protected abstract Func<CancellationToken, Task>? BookkeepingFlush { get; }

    /// <summary>
    /// A connection for the caller's SQL, once <paramref name="migration"/> is applied. The migration is
    /// applied first, on a connection of its own that is given back before this one is taken: a caller
    /// never holds two of a pool's connections at once (many first uses at once on a small pool would
    /// otherwise each hold one while waiting for another).
    /// </summary>
    public async Task<DbConnection> OpenAsync(Migration? migration = null, CancellationToken cancellationToken = default)
    {
        if (migration is not null) await EnsureAppliedAsync(migration, cancellationToken);
        return await OpenConnectionAsync(cancellationToken);
    }

    public async Task<(DbConnection Connection, string? SearchPath)> OpenForOneBatchAsync(Migration migration, CancellationToken cancellationToken = default)
    {
        await EnsureAppliedAsync(migration, cancellationToken);
        return await OpenForOneBatchAsync(cancellationToken);
    }

    /// <summary>See <see cref="IHomeStore.OpenForOneBatchAsync"/>: by default the caller's usual connection, with no path to set.</summary>
    protected virtual async Task<(DbConnection Connection, string? SearchPath)> OpenForOneBatchAsync(CancellationToken cancellationToken) =>
        (await OpenConnectionAsync(cancellationToken), null);

    private async Task EnsureAppliedAsync(Migration migration, CancellationToken cancellationToken)
    {
        if (migration.After is { } earlier) await EnsureAppliedAsync(earlier, cancellationToken);
        var task = _applied.GetOrAdd(migration.Id, _ => ApplyAsync(migration));
        try
        {
            await task.WaitAsync(cancellationToken);
        }
        catch (Exception e) when (e is DbException)
        {
            // A failed migration is tried again by the next caller rather than remembered as done.
            _applied.TryRemove(KeyValuePair.Create(migration.Id, task));
            throw;
        }
    }

    private async Task ApplyAsync(Migration migration)
    {
        await using var connection = await OpenConnectionAsync(CancellationToken.None);
        await using var transaction = await BeginExclusiveAsync(connection, "schema_migrations", CancellationToken.None);
        await StoreCommands.ExecuteAsync(connection, transaction,
            "CREATE TABLE IF NOT EXISTS schema_migrations (id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)", CancellationToken.None);
        var seen = await StoreCommands.ScalarAsync(connection, transaction, "SELECT COUNT(*) FROM schema_migrations WHERE id = @id", CancellationToken.None, ("@id", migration.Id));
        if (Convert.ToInt64(seen, System.Globalization.CultureInfo.InvariantCulture) == 0)
        {
            await StoreCommands.ExecuteAsync(connection, transaction, migration.Sql(Dialect), CancellationToken.None);
            await StoreCommands.ExecuteAsync(connection, transaction, "INSERT INTO schema_migrations(id, applied_at) VALUES (@id, @at)", CancellationToken.None,
                ("@id", migration.Id), ("@at", DateTimeOffset.UtcNow.ToString("O")));
        }
        await transaction.CommitAsync(CancellationToken.None);
    }

    public abstract Task<DbTransaction> BeginExclusiveAsync(DbConnection connection, string scope, CancellationToken cancellationToken = default);

    public abstract IDisposable LockPurse(DbConnection connection);

    private sealed class SqliteHomeStore(string databasePath) : HomeStore
    {
        private readonly string _connectionString = HomeDatabase.ConnectionString(databasePath);
        private readonly string _bookkeepingConnectionString = HomeDatabase.BookkeepingConnectionString(databasePath);

        public override HomeDialect Dialect => HomeDialect.Sqlite;

        public override DbConnection Open() => HomeDatabase.Open(_connectionString);

        protected override async Task<DbConnection> OpenBookkeepingAsync(CancellationToken cancellationToken) =>
            await HomeDatabase.OpenBookkeepingAsync(_bookkeepingConnectionString, cancellationToken);

        protected override Func<CancellationToken, Task>? BookkeepingFlush => FlushAsync;

        /// <summary>The row the flush writes (SQLite's alone, outside the migrations both stores share).</summary>
        private StoreTable? _flushes;

        /// <summary>
        /// One commit on a fully synced handle, which in WAL mode syncs the WAL file and so every
        /// bookkeeping commit before it. It writes a row: a commit that changes nothing writes, and
        /// syncs, nothing.
        /// </summary>
        private async Task FlushAsync(CancellationToken cancellationToken)
        {
            _flushes ??= new StoreTable(this, "CREATE TABLE IF NOT EXISTS store_flushes (id INTEGER PRIMARY KEY, flushed_at TEXT NOT NULL)");
            await using var connection = await _flushes.OpenAsync(cancellationToken);
            await StoreCommands.ExecuteAsync(connection, null,
                "INSERT INTO store_flushes(id, flushed_at) VALUES (1, @at) ON CONFLICT(id) DO UPDATE SET flushed_at = @at", cancellationToken,
                ("@at", StoreCommands.Text(DateTimeOffset.UtcNow)));
        }

        protected override async Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken) =>
            await HomeDatabase.OpenAsync(_connectionString, cancellationToken);

        public override async Task<DbTransaction> BeginExclusiveAsync(DbConnection connection, string scope, CancellationToken cancellationToken = default) =>
            // Microsoft.Data.Sqlite begins IMMEDIATE unless asked for a deferred transaction.
            await connection.BeginTransactionAsync(cancellationToken);

        public override IDisposable LockPurse(DbConnection connection) => NoLock.Instance;

        private sealed class NoLock : IDisposable
        {
            public static readonly NoLock Instance = new();

            public void Dispose()
            {
            }
        }
    }

    private sealed class PostgresHomeStore(NpgsqlDataSource source, string? schema) : HomeStore
    {
        /// <summary>The owner's schema as an identifier (null for a home's own database, which uses the default path).</summary>
        private readonly string? _quotedSchema = schema is null ? null : Quoted(schema);

        /// <summary>An owner's share of the pool its node's other owners use too (none for a home's own database).</summary>
        private readonly OwnerPoolShare? _share = schema is null ? null : OwnerPoolShare.Of(source);

        private Task<NpgsqlConnection> TakeAsync(CancellationToken cancellationToken) =>
            _share is { } share ? share.OpenAsync(source, cancellationToken) : PooledConnections.OpenAsync(source, cancellationToken);

        private readonly string? _setSession = schema is null ? null : "SET search_path TO " + Quoted(schema);

        private static string Quoted(string schema) => $"\"{schema.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";

        protected override async Task<(DbConnection Connection, string? SearchPath)> OpenForOneBatchAsync(CancellationToken cancellationToken) =>
            _quotedSchema is null ? (await OpenConnectionAsync(cancellationToken), null) : (await TakeAsync(cancellationToken), _quotedSchema);

        public override HomeDialect Dialect => HomeDialect.Postgres;

        /// <summary>PostgreSQL's WAL writer flushes a commit made with synchronous_commit off within three wal_writer_delay (600 ms by default).</summary>
        protected override Func<CancellationToken, Task>? BookkeepingFlush => null;

        protected override async Task<DbTransaction> BeginBookkeepingAsync(DbConnection connection, CancellationToken cancellationToken)
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken);
            try
            {
                await StoreCommands.ExecuteAsync(connection, transaction, "SET LOCAL synchronous_commit = off", cancellationToken);
                return transaction;
            }
            catch
            {
                await transaction.DisposeAsync();
                throw;
            }
        }

        public override DbConnection Open()
        {
            var connection = _share is { } share ? share.Open(source) : PooledConnections.Open(source);
            if (_setSession is not { } setSession) return connection;
            try
            {
                using var command = new NpgsqlCommand(setSession, connection);
                command.ExecuteNonQuery();
                return connection;
            }
            catch
            {
                connection.Dispose();
                throw;
            }
        }

        protected override async Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken)
        {
            var connection = await TakeAsync(cancellationToken);
            if (_setSession is not { } setSession) return connection;
            try
            {
                await using var command = new NpgsqlCommand(setSession, connection);
                await command.ExecuteNonQueryAsync(cancellationToken);
                return connection;
            }
            catch
            {
                await connection.DisposeAsync();
                throw;
            }
        }

        public override IDisposable LockPurse(DbConnection connection)
        {
            var key = schema is null ? "purse" : schema + "/purse";
            using (var command = new NpgsqlCommand("SELECT pg_advisory_lock(hashtext(@k))", (NpgsqlConnection)connection))
            {
                command.Parameters.AddWithValue("k", key);
                command.ExecuteNonQuery();
            }
            return new PurseLock((NpgsqlConnection)connection, key);
        }

        /// <summary>
        /// Unlocks explicitly: a pooled connection is reset only when next used, so a lock left to the
        /// reset would stay held while the connection sits in the pool. A connection that broke has lost
        /// its session, and the lock with it.
        /// </summary>
        private sealed class PurseLock(NpgsqlConnection connection, string key) : IDisposable
        {
            public void Dispose()
            {
                if (connection.State != System.Data.ConnectionState.Open) return;
                using var command = new NpgsqlCommand("SELECT pg_advisory_unlock(hashtext(@k))", connection);
                command.Parameters.AddWithValue("k", key);
                command.ExecuteNonQuery();
            }
        }

        public override async Task<DbTransaction> BeginExclusiveAsync(DbConnection connection, string scope, CancellationToken cancellationToken = default)
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken);
            // Scoped by schema: one owner's exclusive work never waits for another's.
            await StoreCommands.ExecuteAsync(connection, transaction, "SELECT pg_advisory_xact_lock(hashtext(@scope))", cancellationToken, ("@scope", schema is null ? scope : schema + "/" + scope));
            return transaction;
        }
    }
}
