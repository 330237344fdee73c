using Daiko.Cards;
using Daiko.Cards.Site;
using Daiko.Home.Mail;
using Daiko.Home.Storage;
using Npgsql;

namespace Daiko.Host;

/// <summary>
/// The deployment's database. The public schema holds what spans owners: <c>host_owners</c> (each
/// owner's card row: public keys, PIN verifiers, counters, state, certificate chain),
/// <c>host_codes</c> (which owner a live enrollment code's public id belongs to) and <c>host_mail</c>
/// (where each owner's payment log is mailed). Each owner's home
/// state is a schema of its own (<see cref="HostSite.SchemaOf"/>) with the home store's tables, so a
/// query of one owner's store cannot name another's rows. Changes that other nodes must apply at once
/// (a device revoked, a policy or payee changed, the card's state) raise <c>NOTIFY daiko_host</c> with
/// the owner's schema, from triggers, whoever made them. The node's data source holds every session to
/// <see cref="PostgresSessionLimits.Hosted"/> from its start (<see cref="HostSite.OpenDataSource"/>).
/// </summary>
public sealed class SiteDatabase(NpgsqlDataSource source) : IOwnerCardRows
{
    public const string Channel = "daiko_host";

    private static readonly (string Id, string Sql)[] SiteMigrations =
    [
        ("host/1", """
            CREATE TABLE IF NOT EXISTS host_owners (
                name TEXT PRIMARY KEY, schema_name TEXT NOT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                tls_key BYTEA NOT NULL, purse_key BYTEA NOT NULL, pin1_verifier BYTEA NOT NULL, pin2_verifier BYTEA NOT NULL, admin_verifier BYTEA NOT NULL,
                pin1_failures INT NOT NULL DEFAULT 0, pin2_failures INT NOT NULL DEFAULT 0, disabled BOOLEAN NOT NULL DEFAULT false,
                state TEXT NOT NULL DEFAULT 'Locked', unblocks INT NOT NULL DEFAULT 0, chain_pem TEXT);
            CREATE TABLE IF NOT EXISTS host_codes (public_id TEXT PRIMARY KEY, owner TEXT NOT NULL REFERENCES host_owners(name), expires_at TIMESTAMPTZ NOT NULL);
            CREATE OR REPLACE FUNCTION public.daiko_owner_changed() RETURNS trigger LANGUAGE plpgsql AS $f$
                BEGIN PERFORM pg_notify('daiko_host', TG_TABLE_SCHEMA); RETURN NULL; END $f$;
            CREATE OR REPLACE FUNCTION public.daiko_card_changed() RETURNS trigger LANGUAGE plpgsql AS $f$
                BEGIN PERFORM pg_notify('daiko_host', NEW.schema_name); RETURN NULL; END $f$;
            DROP TRIGGER IF EXISTS host_owners_changed ON host_owners;
            CREATE TRIGGER host_owners_changed AFTER UPDATE ON host_owners FOR EACH ROW EXECUTE FUNCTION public.daiko_card_changed();
            """),
        ("host/2", """
            ALTER TABLE host_owners ADD COLUMN IF NOT EXISTS admin_failures INT NOT NULL DEFAULT 0;
            CREATE TABLE IF NOT EXISTS host_mail (owner TEXT PRIMARY KEY REFERENCES host_owners(name),
                smtp_host TEXT NOT NULL, smtp_port INT NOT NULL, mail_from TEXT NOT NULL, mail_to TEXT NOT NULL);
            """),
    ];

    public NpgsqlDataSource Source => source;

    /// <summary>A connection from the node's pool (waiting again, and saying so, while the pool is in use to its last).</summary>
    public Task<NpgsqlConnection> OpenConnectionAsync(CancellationToken cancellationToken = default) => PooledConnections.OpenAsync(source, cancellationToken);

    /// <summary>The synchronous <see cref="OpenConnectionAsync"/>, for the card's paths.</summary>
    public NpgsqlConnection OpenConnection() => PooledConnections.Open(source);

    /// <summary>Applies the site's migrations and every owner's (what <c>host init</c> and <c>host migrate</c> run).</summary>
    public async Task MigrateAsync(CancellationToken cancellationToken = default)
    {
        await using (var connection = await OpenConnectionAsync(cancellationToken))
        await using (var transaction = await connection.BeginTransactionAsync(cancellationToken))
        {
            await ExecuteAsync(connection, "SELECT pg_advisory_xact_lock(hashtext('host_migrations'))", cancellationToken);
            await ExecuteAsync(connection, "CREATE TABLE IF NOT EXISTS host_migrations (id TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())", cancellationToken);
            foreach (var (id, sql) in SiteMigrations)
            {
                await using var seen = new NpgsqlCommand("SELECT COUNT(*) FROM host_migrations WHERE id = @id", connection);
                seen.Parameters.AddWithValue("id", id);
                if ((long)(await seen.ExecuteScalarAsync(cancellationToken))! > 0) continue;
                await ExecuteAsync(connection, sql, cancellationToken);
                await using var record = new NpgsqlCommand("INSERT INTO host_migrations(id) VALUES (@id)", connection);
                record.Parameters.AddWithValue("id", id);
                await record.ExecuteNonQueryAsync(cancellationToken);
            }
            await transaction.CommitAsync(cancellationToken);
        }
        foreach (var owner in await OwnersAsync(cancellationToken)) await MigrateOwnerAsync(owner, cancellationToken);
    }

    /// <summary>The owner's schema with every home-store table and the change triggers (idempotent).</summary>
    public async Task MigrateOwnerAsync(string owner, CancellationToken cancellationToken = default)
    {
        var schema = HostSite.SchemaOf(owner);
        await using (var connection = await OpenConnectionAsync(cancellationToken))
        {
            await ExecuteAsync(connection, $"CREATE SCHEMA IF NOT EXISTS {schema}", cancellationToken);
        }
        var store = StoreOf(owner);
        await store.MigrateAsync(cancellationToken);
        // The repositories that create their tables on first use: touched once so the triggers have tables to sit on.
        await new SqlDevicePolicyStore(store).FindAsync("-", cancellationToken);
        await new SqlPayeeStore(store).ListAsync(cancellationToken);
        await new SqlDeviceSessionStore(store).FindAsync("-", cancellationToken);
        await using (var connection = store.Open())
        {
            await using var purse = connection.CreateCommand();
            purse.CommandText = store.Schema;
            await purse.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var connection = await OpenConnectionAsync(cancellationToken))
        {
            foreach (var table in new[] { "devices", "device_policies", "payees" })
            {
                await ExecuteAsync(connection, $"""
                    DROP TRIGGER IF EXISTS {table}_changed ON {schema}.{table};
                    CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE ON {schema}.{table} FOR EACH STATEMENT EXECUTE FUNCTION public.daiko_owner_changed();
                    """, cancellationToken);
            }
        }
    }

    /// <summary>One owner's home store: the owner's schema, on this node's shared pool.</summary>
    public HomeStore StoreOf(string owner) => HomeStore.Postgres(source, HostSite.SchemaOf(owner));

    /// <summary>
    /// Holds the site-wide lock on one owner's name until disposed (a PostgreSQL session advisory lock, on a connection of
    /// its own): taken before <c>host owner add</c> checks the name, released after its row is in, so that two adds of one
    /// name, from two machines too, cannot both pass the check and have the second's provisioning replace the keys the
    /// first's row names.
    /// </summary>
    public async Task<IAsyncDisposable> HoldOwnerNameAsync(string owner, CancellationToken cancellationToken = default)
    {
        var connection = await OpenConnectionAsync(cancellationToken);
        try
        {
            // The two-key form: a key space apart from the single keys of the stores' and migrations' locks.
            await using var command = new NpgsqlCommand("SELECT pg_advisory_lock(hashtext('daiko host owner'), hashtext(@o))", connection);
            command.Parameters.AddWithValue("o", owner);
            // As long as the other add of the name takes (its keys are made in the token); Ctrl-C ends the wait.
            command.CommandTimeout = 0;
            await command.ExecuteNonQueryAsync(cancellationToken);
            return new HeldName(connection, owner);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    private sealed class HeldName(NpgsqlConnection connection, string owner) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            // Let go of explicitly: a pooled connection is reset only when it is next used, and it may sit in the pool.
            // A connection lost meanwhile took the lock with it (the add's own work is done, and stands).
            try
            {
                if (connection.State == System.Data.ConnectionState.Open)
                {
                    await using var command = new NpgsqlCommand("SELECT pg_advisory_unlock(hashtext('daiko host owner'), hashtext(@o))", connection);
                    command.Parameters.AddWithValue("o", owner);
                    await command.ExecuteNonQueryAsync();
                }
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
            }
            finally
            {
                await connection.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// Whether the owner's schema is in the database already, with no owner's row naming it: left from an owner of that
    /// name whose rows were removed by hand, or from an add that did not finish. Checked before an owner is added.
    /// </summary>
    public async Task<bool> SchemaExistsAsync(string owner, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT COUNT(*) FROM pg_namespace WHERE nspname = @s", connection);
        command.Parameters.AddWithValue("s", HostSite.SchemaOf(owner));
        return (long)(await command.ExecuteScalarAsync(cancellationToken))! > 0;
    }

    /// <summary>Why an owner whose schema exists already is not added, and what the operator can do.</summary>
    public static string SchemaLeftOver(string owner) =>
        $"the database holds the schema {HostSite.SchemaOf(owner)} already, left from an earlier owner named '{owner}' (or an add that did not finish): "
        + $"a new owner of that name would get its devices, sessions, PIM and audit. Keep what you need from it, drop it "
        + $"(DROP SCHEMA {HostSite.SchemaOf(owner)} CASCADE), then add the owner again; or choose another name";

    /// <summary>
    /// Adds a provisioned owner (its schema made and migrated first); false when the name is taken. A schema of that
    /// name that exists already is refused (<see cref="SchemaLeftOver"/>), never taken over: its devices, whose
    /// certificates name the owner, would connect as the new owner's.
    /// </summary>
    public async Task<bool> AddOwnerAsync(OwnerCardRow row, CancellationToken cancellationToken = default)
    {
        await using (var connection = await OpenConnectionAsync(cancellationToken))
        {
            await using (var exists = new NpgsqlCommand("SELECT COUNT(*) FROM host_owners WHERE name = @n", connection))
            {
                exists.Parameters.AddWithValue("n", row.Owner);
                if ((long)(await exists.ExecuteScalarAsync(cancellationToken))! > 0) return false;
            }
            try
            {
                // Without IF NOT EXISTS: made here, or refused.
                await ExecuteAsync(connection, $"CREATE SCHEMA {HostSite.SchemaOf(row.Owner)}", cancellationToken);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DuplicateSchema)
            {
                throw new InvalidOperationException(SchemaLeftOver(row.Owner), e);
            }
        }
        await MigrateOwnerAsync(row.Owner, cancellationToken);
        await using var insert = source.CreateCommand("""
            INSERT INTO host_owners(name, schema_name, tls_key, purse_key, pin1_verifier, pin2_verifier, admin_verifier)
            VALUES (@n, @s, @t, @p, @v1, @v2, @va) ON CONFLICT DO NOTHING
            """);
        insert.Parameters.AddWithValue("n", row.Owner);
        insert.Parameters.AddWithValue("s", HostSite.SchemaOf(row.Owner));
        insert.Parameters.AddWithValue("t", row.TlsKeyInfo);
        insert.Parameters.AddWithValue("p", row.PurseKeyInfo);
        insert.Parameters.AddWithValue("v1", row.Pin1Verifier);
        insert.Parameters.AddWithValue("v2", row.Pin2Verifier);
        insert.Parameters.AddWithValue("va", row.AdminVerifier);
        return await insert.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    public async Task<IReadOnlyList<string>> OwnersAsync(CancellationToken cancellationToken = default)
    {
        await using var command = source.CreateCommand("SELECT name FROM host_owners ORDER BY name");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var names = new List<string>();
        while (await reader.ReadAsync(cancellationToken)) names.Add(reader.GetString(0));
        return names;
    }

    /// <summary>Records which owner a new enrollment code's public id belongs to; false when a live code of any owner holds that id.</summary>
    public async Task<bool> RegisterCodeAsync(string publicId, string owner, DateTimeOffset expires, CancellationToken cancellationToken = default)
    {
        await using var command = source.CreateCommand("""
            INSERT INTO host_codes(public_id, owner, expires_at) VALUES (@i, @o, @e)
            ON CONFLICT(public_id) DO UPDATE SET owner = @o, expires_at = @e WHERE host_codes.expires_at < now()
            """);
        command.Parameters.AddWithValue("i", publicId);
        command.Parameters.AddWithValue("o", owner);
        command.Parameters.AddWithValue("e", expires);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    /// <summary>The owner of a live enrollment code's public id, or null.</summary>
    public async Task<string?> OwnerOfCodeAsync(string publicId, CancellationToken cancellationToken = default)
    {
        await using var command = source.CreateCommand("SELECT owner FROM host_codes WHERE public_id = @i AND expires_at > now()");
        command.Parameters.AddWithValue("i", publicId);
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    /// <summary>Sets where an owner's payment log is mailed (<c>host mail set</c>); every node reads it at its next mail.</summary>
    public async Task SetMailAsync(string owner, MailSettings settings, CancellationToken cancellationToken = default)
    {
        await using var command = source.CreateCommand("""
            INSERT INTO host_mail(owner, smtp_host, smtp_port, mail_from, mail_to) VALUES (@o, @h, @p, @f, @t)
            ON CONFLICT(owner) DO UPDATE SET smtp_host = @h, smtp_port = @p, mail_from = @f, mail_to = @t
            """);
        command.Parameters.AddWithValue("o", owner);
        command.Parameters.AddWithValue("h", settings.SmtpHost);
        command.Parameters.AddWithValue("p", settings.SmtpPort);
        command.Parameters.AddWithValue("f", settings.From);
        command.Parameters.AddWithValue("t", settings.To);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Where an owner's payment log is mailed, or null when the owner set nothing.</summary>
    public MailSettings? MailOf(string owner)
    {
        using var command = source.CreateCommand("SELECT smtp_host, smtp_port, mail_from, mail_to FROM host_mail WHERE owner = @o");
        command.Parameters.AddWithValue("o", owner);
        using var reader = command.ExecuteReader();
        return reader.Read() ? new MailSettings(reader.GetString(0), reader.GetInt32(1), reader.GetString(2), reader.GetString(3)) : null;
    }

    public OwnerCardRow? Read(string owner)
    {
        using var connection = OpenConnection();
        return ReadRow(connection, owner, forUpdate: false);
    }

    public T Update<T>(string owner, Func<OwnerCardRow, (OwnerCardRow Next, T Result)> decide)
    {
        using var connection = OpenConnection();
        using var transaction = connection.BeginTransaction();
        var row = ReadRow(connection, owner, forUpdate: true) ?? throw new InvalidOperationException($"no owner named '{owner}' in this deployment");
        var (next, result) = decide(row);
        if (next != row)
        {
            using var command = new NpgsqlCommand("""
                UPDATE host_owners SET pin1_verifier = @v1, pin2_verifier = @v2, pin1_failures = @f1, pin2_failures = @f2, disabled = @d,
                    state = @s, unblocks = @u, chain_pem = @c, admin_failures = @a WHERE name = @n
                """, connection);
            command.Parameters.AddWithValue("v1", next.Pin1Verifier);
            command.Parameters.AddWithValue("v2", next.Pin2Verifier);
            command.Parameters.AddWithValue("f1", next.Pin1Failures);
            command.Parameters.AddWithValue("f2", next.Pin2Failures);
            command.Parameters.AddWithValue("d", next.Disabled);
            command.Parameters.AddWithValue("s", next.State.ToString());
            command.Parameters.AddWithValue("u", next.Unblocks);
            command.Parameters.AddWithValue("c", (object?)next.ChainPem ?? DBNull.Value);
            command.Parameters.AddWithValue("a", next.AdminFailures);
            command.Parameters.AddWithValue("n", owner);
            command.ExecuteNonQuery();
        }
        transaction.Commit();
        return result;
    }

    private static OwnerCardRow? ReadRow(NpgsqlConnection connection, string owner, bool forUpdate)
    {
        using var command = new NpgsqlCommand($"""
            SELECT tls_key, purse_key, pin1_verifier, pin2_verifier, admin_verifier, pin1_failures, pin2_failures, disabled, state, unblocks, chain_pem, admin_failures
            FROM host_owners WHERE name = @n{(forUpdate ? " FOR UPDATE" : "")}
            """, connection);
        command.Parameters.AddWithValue("n", owner);
        using var reader = command.ExecuteReader();
        if (!reader.Read()) return null;
        return new OwnerCardRow(owner, (byte[])reader[0], (byte[])reader[1], (byte[])reader[2], (byte[])reader[3], (byte[])reader[4],
            reader.GetInt32(5), reader.GetInt32(6), reader.GetBoolean(7), Enum.Parse<HomeCardState>(reader.GetString(8)), reader.GetInt32(9),
            reader.IsDBNull(10) ? null : reader.GetString(10), reader.GetInt32(11));
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
