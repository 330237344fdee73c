using Daiko.Home.Devices;
using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>Enrolled devices: id (from the key), unique name, public key, enrolment and revocation times.</summary>
public interface IDeviceStore
{
    Task<Device?> FindByNameAsync(string name, CancellationToken cancellationToken = default);

    Task<Device?> FindByIdAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Every device, revoked ones included, ordered by name.</summary>
    Task<IReadOnlyList<Device>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Adds a device, replacing a revoked one of the same name (its row goes: what a revoked device still
    /// holds is found by <see cref="LiveIdsAsync"/>, not by that row); false (nothing changed) when a live
    /// device already has the name or the id.
    /// </summary>
    Task<bool> AddAsync(Device device, CancellationToken cancellationToken = default);

    /// <summary>Marks a live device revoked; false when there is none by that name (revoking twice changes nothing).</summary>
    Task<bool> RevokeAsync(string name, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// Ids of the devices enrolled and not revoked. A server cuts off whatever it holds for a device not
    /// among them: a revoked row alone would not do, since enrolling its name again removes it, maybe
    /// before every server looked.
    /// </summary>
    Task<IReadOnlySet<string>> LiveIdsAsync(CancellationToken cancellationToken = default);
}

public sealed class SqlDeviceStore(IHomeStore store) : IDeviceStore
{
    internal static readonly Migration Migration = new("devices/1", """
        CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, spki {blob} NOT NULL,
            enrolled_at TEXT NOT NULL, revoked_at TEXT)
        """);

    private const string Columns = "SELECT id, name, spki, enrolled_at, revoked_at FROM devices";

    public async Task<Device?> FindByNameAsync(string name, CancellationToken cancellationToken = default) =>
        (await QueryAsync(Columns + " WHERE name = @v", name, cancellationToken)).SingleOrDefault();

    public async Task<Device?> FindByIdAsync(string id, CancellationToken cancellationToken = default) =>
        (await QueryAsync(Columns + " WHERE id = @v", id, cancellationToken)).SingleOrDefault();

    public async Task<IReadOnlyList<Device>> ListAsync(CancellationToken cancellationToken = default) =>
        await QueryAsync(Columns + " ORDER BY name", null, cancellationToken);

    public async Task<bool> AddAsync(Device device, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        await using var transaction = await store.BeginExclusiveAsync(connection, "devices", cancellationToken);
        await ExecuteAsync(connection, transaction, "DELETE FROM devices WHERE (name = @n OR id = @i) AND revoked_at IS NOT NULL", cancellationToken,
            ("@n", device.Name), ("@i", device.Id));
        var added = await ExecuteAsync(connection, transaction, "INSERT INTO devices(id, name, spki, enrolled_at, revoked_at) VALUES(@i, @n, @k, @a, @r) ON CONFLICT DO NOTHING",
            cancellationToken, ("@i", device.Id), ("@n", device.Name), ("@k", device.PublicKeyInfo), ("@a", Text(device.EnrolledAt)),
            ("@r", device.RevokedAt is { } r ? Text(r) : null));
        await transaction.CommitAsync(cancellationToken);
        return added == 1;
    }

    public async Task<bool> RevokeAsync(string name, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return await ExecuteAsync(connection, null, "UPDATE devices SET revoked_at = @a WHERE name = @n AND revoked_at IS NULL", cancellationToken,
            ("@a", Text(at)), ("@n", name)) == 1;
    }

    public async Task<IReadOnlySet<string>> LiveIdsAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return (await ReadAllAsync(connection, null, "SELECT id FROM devices WHERE revoked_at IS NULL", r => r.GetString(0), cancellationToken)).ToHashSet(StringComparer.Ordinal);
    }

    private async Task<List<Device>> QueryAsync(string sql, string? value, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return await ReadAllAsync(connection, null, sql,
            r => new Device(r.GetString(0), r.GetString(1), (byte[])r.GetValue(2), r.Time(3), r.NullableTime(4)),
            cancellationToken, value is null ? [] : [("@v", value)]);
    }
}
