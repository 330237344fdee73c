using System.Data.Common;
using System.Globalization;

namespace Daiko.Home.Storage;

/// <summary>
/// One device's own unlock session: opened when that device gave PIN1 and PIN2 itself, ended by its
/// lock, its idle timeout, its revocation or the card leaving crypto-ready. <see cref="SessionId"/>
/// tells a session from a later one of the same device.
/// </summary>
public sealed record DeviceSession(string DeviceId, string SessionId, DateTimeOffset UnlockedAt, DateTimeOffset LastUse);

/// <summary>The devices' unlock sessions, kept in the home store so that any node of a hosted deployment honours them.</summary>
public interface IDeviceSessionStore
{
    Task<DeviceSession?> FindAsync(string deviceId, CancellationToken cancellationToken = default);

    /// <summary>Opens (or replaces) the device's session, whatever the store holds for it.</summary>
    Task SaveAsync(DeviceSession session, CancellationToken cancellationToken = default);

    /// <summary>
    /// Opens the device's session in place of the one <paramref name="replacing"/> names (null: in place of none); false, and
    /// nothing written, when the store holds another by now (another node ended it, or opened another, since it was read).
    /// </summary>
    Task<bool> ReplaceAsync(DeviceSession session, string? replacing, CancellationToken cancellationToken = default);

    /// <summary>Moves the session's last use forward; false when that session no longer exists.</summary>
    Task<bool> TouchAsync(string deviceId, string sessionId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Ends the device's session; false when it had none.</summary>
    Task<bool> EndAsync(string deviceId, CancellationToken cancellationToken = default);

    /// <summary>Ends every session (the card left crypto-ready); returns how many there were.</summary>
    Task<int> EndAllAsync(CancellationToken cancellationToken = default);

    Task<IReadOnlyList<DeviceSession>> ListAsync(CancellationToken cancellationToken = default);
}

/// <summary>
/// Device sessions on any <see cref="IHomeStore"/> (SQLite or PostgreSQL): one table, the same SQL on
/// both, created on first use.
/// </summary>
public sealed class SqlDeviceSessionStore(IHomeStore store) : IDeviceSessionStore
{
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS device_sessions (
            device_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, unlocked_at TEXT NOT NULL, last_use TEXT NOT NULL)
        """;

    private const string Columns = "device_id, session_id, unlocked_at, last_use";

    private readonly StoreTable _table = new(store, Schema);

    public async Task<DeviceSession?> FindAsync(string deviceId, CancellationToken cancellationToken = default)
    {
        var found = await QueryAsync($"SELECT {Columns} FROM device_sessions WHERE device_id = @d", cancellationToken, ("@d", deviceId));
        return found.Count == 0 ? null : found[0];
    }

    public Task<IReadOnlyList<DeviceSession>> ListAsync(CancellationToken cancellationToken = default) =>
        QueryAsync($"SELECT {Columns} FROM device_sessions ORDER BY device_id", cancellationToken);

    public async Task SaveAsync(DeviceSession session, CancellationToken cancellationToken = default) =>
        await ExecuteAsync("""
            INSERT INTO device_sessions(device_id, session_id, unlocked_at, last_use) VALUES (@d, @s, @u, @l)
            ON CONFLICT(device_id) DO UPDATE SET session_id = @s, unlocked_at = @u, last_use = @l
            """, cancellationToken, ("@d", session.DeviceId), ("@s", session.SessionId), ("@u", Text(session.UnlockedAt)), ("@l", Text(session.LastUse)));

    public async Task<bool> ReplaceAsync(DeviceSession session, string? replacing, CancellationToken cancellationToken = default) =>
        await ExecuteAsync(replacing is null
                ? "INSERT INTO device_sessions(device_id, session_id, unlocked_at, last_use) VALUES (@d, @s, @u, @l) ON CONFLICT(device_id) DO NOTHING"
                : "UPDATE device_sessions SET session_id = @s, unlocked_at = @u, last_use = @l WHERE device_id = @d AND session_id = @r",
            cancellationToken, ("@d", session.DeviceId), ("@s", session.SessionId), ("@u", Text(session.UnlockedAt)), ("@l", Text(session.LastUse)),
            ("@r", replacing ?? "")) == 1;

    /// <summary>In the store's next grouped commit (<see cref="GroupedWrites"/>): touches of many devices share one fsync.</summary>
    public async Task<bool> TouchAsync(string deviceId, string sessionId, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        await _table.EnsureAsync(cancellationToken);
        return await store.Writes.WriteAsync(async (connection, transaction) =>
        {
            await using var touch = StoreCommands.Command(connection, transaction,
                "UPDATE device_sessions SET last_use = @l WHERE device_id = @d AND session_id = @s AND last_use < @l", ("@d", deviceId), ("@s", sessionId), ("@l", Text(at)));
            if (await touch.ExecuteNonQueryAsync(CancellationToken.None) > 0) return true;
            // Not moved forward: still this session (touched later already), or ended.
            await using var same = StoreCommands.Command(connection, transaction, "SELECT COUNT(*) FROM device_sessions WHERE device_id = @d AND session_id = @s", ("@d", deviceId), ("@s", sessionId));
            return Convert.ToInt64(await same.ExecuteScalarAsync(CancellationToken.None), CultureInfo.InvariantCulture) > 0;
        }, cancellationToken);
    }

    public async Task<bool> EndAsync(string deviceId, CancellationToken cancellationToken = default) =>
        await ExecuteAsync("DELETE FROM device_sessions WHERE device_id = @d", cancellationToken, ("@d", deviceId)) > 0;

    public Task<int> EndAllAsync(CancellationToken cancellationToken = default) => ExecuteAsync("DELETE FROM device_sessions", cancellationToken);

    /// <summary>Round-trip text that sorts as time does (always UTC, fixed width).</summary>
    private static string Text(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    private static DateTimeOffset Time(string text) => DateTimeOffset.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal);

    private async Task<int> ExecuteAsync(string sql, CancellationToken cancellationToken, params (string Name, object Value)[] parameters)
    {
        await using var connection = await _table.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) StoreTable.Add(command, name, value);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private async Task<IReadOnlyList<DeviceSession>> QueryAsync(string sql, CancellationToken cancellationToken, params (string Name, object Value)[] parameters)
    {
        await using var connection = await _table.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) StoreTable.Add(command, name, value);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var sessions = new List<DeviceSession>();
        while (await reader.ReadAsync(cancellationToken))
        {
            sessions.Add(new DeviceSession(reader.GetString(0), reader.GetString(1), Time(reader.GetString(2)), Time(reader.GetString(3))));
        }
        return sessions;
    }
}
