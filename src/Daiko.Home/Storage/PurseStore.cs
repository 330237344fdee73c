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
            """;
    }
}
