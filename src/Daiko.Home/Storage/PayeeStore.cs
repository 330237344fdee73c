using System.Data.Common;
using System.Globalization;

namespace Daiko.Home.Storage;

/// <summary>What a payee may sign: a bank signs refills, a market signs payment requests and cancellation confirmations.</summary>
public enum PayeeRole
{
    Market,
    Bank,
}

/// <summary>A market or bank the owner declared: its name (the id in its money messages), role and verification key (SubjectPublicKeyInfo PEM).</summary>
public sealed record Payee(string Name, PayeeRole Role, string PublicKeyPem, DateTimeOffset AddedAt);

/// <summary>The owner's payees, kept in the home store (so every home-server node of a hosted deployment sees the same).</summary>
public interface IPayeeStore
{
    Task<IReadOnlyList<Payee>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>Adds or replaces the payee of that name.</summary>
    Task AddAsync(Payee payee, CancellationToken cancellationToken = default);

    /// <summary>False when no payee has that name.</summary>
    Task<bool> RemoveAsync(string name, CancellationToken cancellationToken = default);
}

/// <summary>Payees on any <see cref="IHomeStore"/> (SQLite or PostgreSQL): one table, the same SQL on both, created on first use.</summary>
public sealed class SqlPayeeStore(IHomeStore store) : IPayeeStore
{
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS payees (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, public_key TEXT NOT NULL, added_at TEXT NOT NULL)
        """;

    private int _schemaReady;

    private async Task<DbConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = store.Open();
        if (Volatile.Read(ref _schemaReady) == 0)
        {
            await using var create = connection.CreateCommand();
            create.CommandText = Schema;
            await create.ExecuteNonQueryAsync(cancellationToken);
            Volatile.Write(ref _schemaReady, 1);
        }
        return connection;
    }

    public async Task<IReadOnlyList<Payee>> ListAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT name, role, public_key, added_at FROM payees ORDER BY name";
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var list = new List<Payee>();
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(new Payee(reader.GetString(0), reader.GetString(1) == "bank" ? PayeeRole.Bank : PayeeRole.Market, reader.GetString(2),
                DateTimeOffset.Parse(reader.GetString(3), CultureInfo.InvariantCulture)));
        }
        return list;
    }

    public async Task AddAsync(Payee payee, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO payees(name, role, public_key, added_at) VALUES (@n, @r, @k, @t)
            ON CONFLICT(name) DO UPDATE SET role = @r, public_key = @k, added_at = @t
            """;
        Add(command, "@n", payee.Name);
        Add(command, "@r", payee.Role == PayeeRole.Bank ? "bank" : "market");
        Add(command, "@k", payee.PublicKeyPem);
        Add(command, "@t", payee.AddedAt.ToString("O"));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<bool> RemoveAsync(string name, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM payees WHERE name = @n";
        Add(command, "@n", name);
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    private static void Add(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }
}
