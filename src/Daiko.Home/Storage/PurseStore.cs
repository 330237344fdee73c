using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Daiko.Home.Storage;

/// <summary>
/// The home server's transactional store for money: the ledger runs every change and its log entry in
/// one transaction on a connection from here, with the same SQL on every implementation (named
/// @parameters, ON CONFLICT upserts).
/// </summary>
public interface IHomeStore
{
    DbConnection Open();

    /// <summary>The schema, in this database's dialect (idempotent: CREATE … IF NOT EXISTS).</summary>
    string Schema { get; }
}

/// <summary>
/// The purse's tables: balances, the hash-chained log, stored answers keyed by (kind, party, id), payments,
/// the card's seal, and a count of updates and deletes of log rows kept by trigger (the ledger only
/// inserts, so a change in the count sends the next operation to a whole-chain check).
/// The two stores: SQLite (the embedded default, WAL, fsync on commit) or PostgreSQL (hosted
/// deployments with several home-server nodes, F18); only the schema's types differ.
/// </summary>
public abstract class PurseStore : IHomeStore
{
    public abstract DbConnection Open();

    public abstract string Schema { get; }

    public static PurseStore Sqlite(string databasePath) => new SqlitePurseStore(HomeDatabase.ConnectionString(databasePath));

    public static PurseStore Postgres(string connectionString) => new PostgresPurseStore(connectionString);

    private sealed class SqlitePurseStore(string connectionString) : PurseStore
    {
        public override DbConnection Open() => HomeDatabase.Open(connectionString);

        public override string Schema => """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS purse_balances (currency TEXT PRIMARY KEY, amount INTEGER NOT NULL CHECK (amount >= 0));
            CREATE TABLE IF NOT EXISTS purse_log (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
                amount INTEGER NOT NULL, currency TEXT NOT NULL, balance_after INTEGER NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS purse_answers (request_id TEXT PRIMARY KEY, answer BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS purse_payments (payment_id TEXT PRIMARY KEY, market TEXT NOT NULL, amount INTEGER NOT NULL,
                currency TEXT NOT NULL, at TEXT NOT NULL, state TEXT NOT NULL, market_url TEXT);
            CREATE TABLE IF NOT EXISTS purse_seal (id INTEGER PRIMARY KEY CHECK (id = 1), counter INTEGER NOT NULL, seal BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS purse_requests (kind TEXT NOT NULL, party TEXT NOT NULL, id TEXT NOT NULL, message_hash TEXT NOT NULL,
                answer BLOB NOT NULL, PRIMARY KEY (kind, party, id));
            CREATE TABLE IF NOT EXISTS purse_log_edits (id INTEGER PRIMARY KEY CHECK (id = 1), edits INTEGER NOT NULL);
            INSERT INTO purse_log_edits(id, edits) VALUES (1, 0) ON CONFLICT(id) DO NOTHING;
            CREATE TRIGGER IF NOT EXISTS purse_log_updated AFTER UPDATE ON purse_log BEGIN UPDATE purse_log_edits SET edits = edits + 1 WHERE id = 1; END;
            CREATE TRIGGER IF NOT EXISTS purse_log_deleted AFTER DELETE ON purse_log BEGIN UPDATE purse_log_edits SET edits = edits + 1 WHERE id = 1; END;
            """;
    }

    private sealed class PostgresPurseStore(string connectionString) : PurseStore
    {
        private readonly NpgsqlDataSource _source = NpgsqlDataSource.Create(connectionString);

        public override DbConnection Open() => _source.OpenConnection();

        public override string Schema => """
            CREATE TABLE IF NOT EXISTS purse_balances (currency TEXT PRIMARY KEY, amount BIGINT NOT NULL CHECK (amount >= 0));
            CREATE TABLE IF NOT EXISTS purse_log (seq BIGINT PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
                amount BIGINT NOT NULL, currency TEXT NOT NULL, balance_after BIGINT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS purse_answers (request_id TEXT PRIMARY KEY, answer BYTEA NOT NULL);
            CREATE TABLE IF NOT EXISTS purse_payments (payment_id TEXT PRIMARY KEY, market TEXT NOT NULL, amount BIGINT NOT NULL,
                currency TEXT NOT NULL, at TEXT NOT NULL, state TEXT NOT NULL, market_url TEXT);
            CREATE TABLE IF NOT EXISTS purse_seal (id INTEGER PRIMARY KEY CHECK (id = 1), counter BIGINT NOT NULL, seal BYTEA NOT NULL);
            CREATE TABLE IF NOT EXISTS purse_requests (kind TEXT NOT NULL, party TEXT NOT NULL, id TEXT NOT NULL, message_hash TEXT NOT NULL,
                answer BYTEA NOT NULL, PRIMARY KEY (kind, party, id));
            CREATE TABLE IF NOT EXISTS purse_log_edits (id INTEGER PRIMARY KEY CHECK (id = 1), edits BIGINT NOT NULL);
            INSERT INTO purse_log_edits(id, edits) VALUES (1, 0) ON CONFLICT(id) DO NOTHING;
            DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'purse_log_edited') THEN
                    CREATE OR REPLACE FUNCTION purse_log_edited() RETURNS trigger LANGUAGE plpgsql AS $f$
                        BEGIN UPDATE purse_log_edits SET edits = edits + 1 WHERE id = 1; RETURN NULL; END $f$;
                    CREATE TRIGGER purse_log_edited AFTER UPDATE OR DELETE OR TRUNCATE ON purse_log FOR EACH STATEMENT EXECUTE FUNCTION purse_log_edited();
                END IF;
            END $$;
            """;
    }
}
