using System.Data.Common;

namespace Daiko.Home.Storage;

/// <summary>
/// A repository's table on an <see cref="IHomeStore"/>: connections from the store, the table's schema
/// created on first use (the same SQL on SQLite and PostgreSQL), and named parameters.
/// </summary>
public sealed class StoreTable(IHomeStore store, string schema)
{
    private int _schemaReady;

    public async Task<DbConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = store.Open();
        if (Volatile.Read(ref _schemaReady) == 0)
        {
            await using var create = connection.CreateCommand();
            create.CommandText = schema;
            await create.ExecuteNonQueryAsync(cancellationToken);
            Volatile.Write(ref _schemaReady, 1);
        }
        return connection;
    }

    /// <summary>Creates the table unless this process did already (before a grouped write, <see cref="GroupedWrites"/>).</summary>
    public async Task EnsureAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _schemaReady) != 0) return;
        await using var connection = await OpenAsync(cancellationToken);
    }

    public static void Add(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }
}
