using Daiko.Home.Appliances;
using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>Registered appliances (by unique name) and the readings collected from them.</summary>
public interface IApplianceStore
{
    /// <summary>Registers an appliance, or moves an existing one of that name to a new endpoint.</summary>
    Task RegisterAsync(Appliance appliance, CancellationToken cancellationToken = default);

    /// <summary>Every appliance, ordered by name.</summary>
    Task<IReadOnlyList<Appliance>> ListAsync(CancellationToken cancellationToken = default);

    Task<Appliance?> FindAsync(string name, CancellationToken cancellationToken = default);

    Task RecordAsync(ApplianceReading reading, CancellationToken cancellationToken = default);

    /// <summary>The newest <paramref name="limit"/> readings of one appliance, newest first.</summary>
    Task<IReadOnlyList<ApplianceReading>> ReadingsAsync(string name, int limit, CancellationToken cancellationToken = default);
}

/// <param name="maxReadingsKept">Readings kept per appliance (<see cref="MaxReadingsKept"/> unless a test says fewer).</param>
public sealed class SqlApplianceStore(IHomeStore store, int maxReadingsKept = SqlApplianceStore.MaxReadingsKept) : IApplianceStore
{
    /// <summary>
    /// Readings kept per appliance, the oldest going first: as many as a device may ask for at once. A reading is stored on
    /// every state read and command a device sends, so without a bound a device would grow the store a request at a time.
    /// </summary>
    public const int MaxReadingsKept = 1000;

    internal static readonly Migration Migration = new("appliances/1", """
        CREATE TABLE IF NOT EXISTS appliances (name TEXT PRIMARY KEY, endpoint TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS appliance_readings (id {id}, appliance TEXT NOT NULL, at TEXT NOT NULL, state TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS appliance_readings_by_name ON appliance_readings(appliance, id);
        """);

    public async Task RegisterAsync(Appliance appliance, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        await ExecuteAsync(connection, null, "INSERT INTO appliances(name, endpoint) VALUES(@n, @e) ON CONFLICT(name) DO UPDATE SET endpoint = @e", cancellationToken,
            ("@n", appliance.Name), ("@e", appliance.Endpoint.ToString()));
    }

    public async Task<IReadOnlyList<Appliance>> ListAsync(CancellationToken cancellationToken = default) =>
        await QueryAsync("SELECT name, endpoint FROM appliances ORDER BY name", null, cancellationToken);

    public async Task<Appliance?> FindAsync(string name, CancellationToken cancellationToken = default) =>
        (await QueryAsync("SELECT name, endpoint FROM appliances WHERE name = @n", name, cancellationToken)).SingleOrDefault();

    public async Task RecordAsync(ApplianceReading reading, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        await ExecuteAsync(connection, null, "INSERT INTO appliance_readings(appliance, at, state) VALUES(@n, @a, @s)", cancellationToken,
            ("@n", reading.Appliance), ("@a", Text(reading.At)), ("@s", reading.State));
        await ExecuteAsync(connection, null, """
            DELETE FROM appliance_readings WHERE appliance = @n AND id <= (
                SELECT id FROM appliance_readings WHERE appliance = @n ORDER BY id DESC LIMIT 1 OFFSET @kept)
            """, cancellationToken, ("@n", reading.Appliance), ("@kept", maxReadingsKept));
    }

    public async Task<IReadOnlyList<ApplianceReading>> ReadingsAsync(string name, int limit, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return await ReadAllAsync(connection, null, "SELECT appliance, at, state FROM appliance_readings WHERE appliance = @n ORDER BY id DESC LIMIT @l",
            r => new ApplianceReading(r.GetString(0), r.Time(1), r.GetString(2)), cancellationToken, ("@n", name), ("@l", limit));
    }

    private async Task<List<Appliance>> QueryAsync(string sql, string? name, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return await ReadAllAsync(connection, null, sql, r => new Appliance(r.GetString(0), new Uri(r.GetString(1))), cancellationToken,
            name is null ? [] : [("@n", name)]);
    }
}
