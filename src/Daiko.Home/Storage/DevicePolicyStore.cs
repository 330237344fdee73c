using System.Data.Common;
using System.Globalization;
using Daiko.Home.Policy;

namespace Daiko.Home.Storage;

/// <summary>Each device's policy (by device name, so that it can be set before the device enrolls) and when it was last used.</summary>
public interface IDevicePolicyStore
{
    /// <summary>The policy set for <paramref name="deviceName"/>; null when the owner never set one (the default applies).</summary>
    Task<DevicePolicy?> FindAsync(string deviceName, CancellationToken cancellationToken = default);

    Task SaveAsync(string deviceName, DevicePolicy policy, CancellationToken cancellationToken = default);

    Task NoteUseAsync(string deviceName, DateTimeOffset at, CancellationToken cancellationToken = default);

    Task<DateTimeOffset?> LastUseAsync(string deviceName, CancellationToken cancellationToken = default);

    /// <summary>The ticket terms (<see cref="DevicePolicy.TicketTerms"/>) the device's ticket stock was last handed out under; null when none is noted.</summary>
    Task<string?> StockTermsAsync(string deviceName, CancellationToken cancellationToken = default);

    Task NoteStockTermsAsync(string deviceName, string terms, CancellationToken cancellationToken = default);
}

/// <summary>
/// Device policies on any <see cref="IHomeStore"/> (SQLite or PostgreSQL), in their own tables (the
/// device registry is kept apart), the same SQL on both, created on first use.
/// </summary>
public sealed class SqlDevicePolicyStore(IHomeStore store) : IDevicePolicyStore
{
    /// <summary>
    /// The tables as they were first made on first use (IF NOT EXISTS: a store of a version before this
    /// migration was recorded has them already, and this step records them).
    /// </summary>
    internal static readonly Migration Migration = new("device_policies/1", """
        CREATE TABLE IF NOT EXISTS device_policies (
            name TEXT PRIMARY KEY, markets TEXT NOT NULL, modes TEXT NOT NULL, spend_limit BIGINT,
            max_tickets INTEGER NOT NULL, ticket_lifetime_seconds BIGINT, appliances TEXT, updated_at TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS device_usage (name TEXT PRIMARY KEY, last_used_at TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS device_stock_terms (name TEXT PRIMARY KEY, terms TEXT NOT NULL)
        """);

    /// <summary>The payees a device may pay (null: every declared one).</summary>
    internal static readonly Migration PayeesMigration = new("device_policies/2", "ALTER TABLE device_policies ADD COLUMN payees TEXT", After: Migration);

    private int _schemaReady;

    private async Task<DbConnection> OpenAsync(CancellationToken cancellationToken) =>
        Volatile.Read(ref _schemaReady) == 1 ? store.Open() : await OpenMigratedAsync(cancellationToken);

    private async Task<DbConnection> OpenMigratedAsync(CancellationToken cancellationToken)
    {
        var connection = await store.OpenAsync(PayeesMigration, cancellationToken);
        Volatile.Write(ref _schemaReady, 1);
        return connection;
    }

    public async Task<DevicePolicy?> FindAsync(string deviceName, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT markets, modes, spend_limit, max_tickets, ticket_lifetime_seconds, appliances, payees FROM device_policies WHERE name = @n";
        Add(command, "@n", deviceName);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken)) return null;
        long? Number(int i) => reader.IsDBNull(i) ? null : Convert.ToInt64(reader.GetValue(i), CultureInfo.InvariantCulture);
        return new DevicePolicy(
            DevicePolicy.ParseMarkets(reader.GetString(0)),
            DevicePolicy.ParseModes(reader.GetString(1)),
            Number(2),
            (int)Number(3)!.Value,
            Number(4) is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
            reader.IsDBNull(5) ? null : DevicePolicy.Split(reader.GetString(5)))
        {
            Payees = reader.IsDBNull(6) ? null : DevicePolicy.Split(reader.GetString(6)),
        };
    }

    public async Task SaveAsync(string deviceName, DevicePolicy policy, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO device_policies(name, markets, modes, spend_limit, max_tickets, ticket_lifetime_seconds, appliances, payees, updated_at)
            VALUES (@n, @m, @o, @s, @t, @l, @a, @p, @at)
            ON CONFLICT(name) DO UPDATE SET markets = @m, modes = @o, spend_limit = @s, max_tickets = @t, ticket_lifetime_seconds = @l,
                appliances = @a, payees = @p, updated_at = @at
            """;
        Add(command, "@n", deviceName);
        Add(command, "@m", policy.MarketsText);
        Add(command, "@o", policy.ModesText);
        Add(command, "@s", (object?)policy.SpendLimitPerDay ?? DBNull.Value);
        Add(command, "@t", policy.MaxTickets);
        Add(command, "@l", policy.TicketLifetime is { } l ? (long)l.TotalSeconds : DBNull.Value);
        Add(command, "@a", policy.Appliances is null ? DBNull.Value : DevicePolicy.Join(policy.Appliances));
        Add(command, "@p", policy.Payees is null ? DBNull.Value : DevicePolicy.Join(policy.Payees));
        Add(command, "@at", DateTimeOffset.UtcNow.ToString("O"));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>In the store's next grouped commit (<see cref="GroupedWrites"/>).</summary>
    public async Task NoteUseAsync(string deviceName, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        if (Volatile.Read(ref _schemaReady) == 0) await (await OpenAsync(cancellationToken)).DisposeAsync();
        await store.Writes.WriteAsync((connection, transaction) => StoreCommands.ExecuteAsync(connection, transaction,
            "INSERT INTO device_usage(name, last_used_at) VALUES (@n, @at) ON CONFLICT(name) DO UPDATE SET last_used_at = @at", CancellationToken.None,
            ("@n", deviceName), ("@at", at.ToUniversalTime().ToString("O"))), cancellationToken);
    }

    public async Task<DateTimeOffset?> LastUseAsync(string deviceName, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT last_used_at FROM device_usage WHERE name = @n";
        Add(command, "@n", deviceName);
        return await command.ExecuteScalarAsync(cancellationToken) is string at ? DateTimeOffset.Parse(at, CultureInfo.InvariantCulture) : null;
    }

    public async Task<string?> StockTermsAsync(string deviceName, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        return await StoreCommands.ScalarAsync(connection, null, "SELECT terms FROM device_stock_terms WHERE name = @n", cancellationToken, ("@n", deviceName)) as string;
    }

    public async Task NoteStockTermsAsync(string deviceName, string terms, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await StoreCommands.ExecuteAsync(connection, null, "INSERT INTO device_stock_terms(name, terms) VALUES (@n, @t) ON CONFLICT(name) DO UPDATE SET terms = @t",
            cancellationToken, ("@n", deviceName), ("@t", terms));
    }

    internal static void Add(DbCommand command, string name, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
    }
}
