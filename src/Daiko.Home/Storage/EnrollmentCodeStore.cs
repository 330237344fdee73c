using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>A one-time enrollment code as stored: only its salted hash, for one device name.</summary>
public sealed record EnrollmentCodeRecord(string Name, byte[] CodeHash, byte[] Salt, DateTimeOffset ExpiresAt, bool Used);

/// <summary>Enrollment codes (one per pending device name) and the failed redemptions that rate-limit them.</summary>
public interface IEnrollmentCodeStore
{
    /// <summary>Stores a fresh code for its name, replacing (and so invalidating) any earlier one.</summary>
    Task PutAsync(EnrollmentCodeRecord code, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<EnrollmentCodeRecord>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Marks the code unused until now as used; true for exactly one caller however many try at once,
    /// and false when the name's code was replaced meanwhile (<paramref name="codeHash"/> differs).
    /// </summary>
    Task<bool> ConsumeAsync(string name, byte[] codeHash, CancellationToken cancellationToken = default);

    Task RecordFailureAsync(DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Failed redemptions strictly after <paramref name="since"/>.</summary>
    Task<long> FailuresSinceAsync(DateTimeOffset since, CancellationToken cancellationToken = default);
}

public sealed class SqlEnrollmentCodeStore(IHomeStore store) : IEnrollmentCodeStore
{
    internal static readonly Migration Migration = new("enrollment_codes/1", """
        CREATE TABLE IF NOT EXISTS enrollment_codes (name TEXT PRIMARY KEY, code_hash {blob} NOT NULL, salt {blob} NOT NULL,
            expires_at TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE IF NOT EXISTS enrollment_failures (at TEXT NOT NULL);
        """);

    public async Task PutAsync(EnrollmentCodeRecord code, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        await ExecuteAsync(connection, null, """
            INSERT INTO enrollment_codes(name, code_hash, salt, expires_at, used) VALUES(@n, @h, @s, @e, @u)
            ON CONFLICT(name) DO UPDATE SET code_hash = @h, salt = @s, expires_at = @e, used = @u
            """, cancellationToken, ("@n", code.Name), ("@h", code.CodeHash), ("@s", code.Salt), ("@e", Text(code.ExpiresAt)), ("@u", code.Used ? 1 : 0));
    }

    public async Task<IReadOnlyList<EnrollmentCodeRecord>> ListAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return await ReadAllAsync(connection, null, "SELECT name, code_hash, salt, expires_at, used FROM enrollment_codes ORDER BY name",
            r => new EnrollmentCodeRecord(r.GetString(0), (byte[])r.GetValue(1), (byte[])r.GetValue(2), r.Time(3), r.Long(4) != 0), cancellationToken);
    }

    public async Task<bool> ConsumeAsync(string name, byte[] codeHash, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        // One conditional UPDATE: the database, not the caller, decides who consumed the code.
        return await ExecuteAsync(connection, null, "UPDATE enrollment_codes SET used = 1 WHERE name = @n AND code_hash = @h AND used = 0", cancellationToken,
            ("@n", name), ("@h", codeHash)) == 1;
    }

    public async Task RecordFailureAsync(DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        await ExecuteAsync(connection, null, "INSERT INTO enrollment_failures(at) VALUES(@a)", cancellationToken, ("@a", Text(at)));
    }

    public async Task<long> FailuresSinceAsync(DateTimeOffset since, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(Migration, cancellationToken);
        return Convert.ToInt64(await ScalarAsync(connection, null, "SELECT COUNT(*) FROM enrollment_failures WHERE at > @since", cancellationToken, ("@since", Text(since))),
            System.Globalization.CultureInfo.InvariantCulture);
    }
}
