using System.Data.Common;
using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>
/// A one-time enrollment code as stored: only its secret's salted hash, for one device name, under its
/// public id (null for codes made before codes had one).
/// </summary>
public sealed record EnrollmentCodeRecord(string Name, byte[] CodeHash, byte[] Salt, DateTimeOffset ExpiresAt, bool Used, string? PublicId = null);

/// <summary>Enrollment codes, one per pending device name.</summary>
public interface IEnrollmentCodeStore
{
    /// <summary>Stores a fresh code for its name, replacing (and so invalidating) any earlier one.</summary>
    Task PutAsync(EnrollmentCodeRecord code, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<EnrollmentCodeRecord>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// The codes stored under <paramref name="publicId"/> (used or not, expired or not), or with
    /// <c>null</c> the codes that have no public id; ordered by name.
    /// </summary>
    Task<IReadOnlyList<EnrollmentCodeRecord>> ListByPublicIdAsync(string? publicId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Marks the code unused until now as used; true for exactly one caller however many try at once,
    /// and false when the name's code was replaced meanwhile (<paramref name="codeHash"/> differs).
    /// </summary>
    Task<bool> ConsumeAsync(string name, byte[] codeHash, CancellationToken cancellationToken = default);

    /// <summary>
    /// Keeps a code that a newer one for its name is about to replace (its public id, hash, salt and expiry), so that
    /// its holder can be told why it no longer works; forgets those expired by <paramref name="now"/>.
    /// </summary>
    Task RememberReplacedAsync(EnrollmentCodeRecord code, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>The replaced code kept under <paramref name="publicId"/> (its name is not kept), or null.</summary>
    Task<EnrollmentCodeRecord?> FindReplacedAsync(string publicId, CancellationToken cancellationToken = default);
}

public sealed class SqlEnrollmentCodeStore(IHomeStore store) : IEnrollmentCodeStore
{
    internal static readonly Migration Migration = new("enrollment_codes/1", """
        CREATE TABLE IF NOT EXISTS enrollment_codes (name TEXT PRIMARY KEY, code_hash {blob} NOT NULL, salt {blob} NOT NULL,
            expires_at TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE IF NOT EXISTS enrollment_failures (at TEXT NOT NULL);
        """);

    /// <summary>Codes get a public id, so a redemption hashes one stored code rather than all of them.</summary>
    internal static readonly Migration PublicIdMigration = new("enrollment_codes/2", """
        ALTER TABLE enrollment_codes ADD COLUMN public_id TEXT;
        CREATE INDEX IF NOT EXISTS enrollment_codes_public_id ON enrollment_codes(public_id);
        """, After: Migration);

    /// <summary>Codes replaced by a newer one for their name, until they would have expired: see <see cref="RememberReplacedAsync"/>.</summary>
    internal static readonly Migration ReplacedMigration = new("enrollment_codes/3", """
        CREATE TABLE IF NOT EXISTS replaced_enrollment_codes (public_id TEXT PRIMARY KEY, code_hash {blob} NOT NULL, salt {blob} NOT NULL,
            expires_at TEXT NOT NULL);
        """, After: PublicIdMigration);

    private const string Columns = "name, code_hash, salt, expires_at, used, public_id";

    public async Task PutAsync(EnrollmentCodeRecord code, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(PublicIdMigration, cancellationToken);
        await ExecuteAsync(connection, null, """
            INSERT INTO enrollment_codes(name, code_hash, salt, expires_at, used, public_id) VALUES(@n, @h, @s, @e, @u, @i)
            ON CONFLICT(name) DO UPDATE SET code_hash = @h, salt = @s, expires_at = @e, used = @u, public_id = @i
            """, cancellationToken, ("@n", code.Name), ("@h", code.CodeHash), ("@s", code.Salt), ("@e", Text(code.ExpiresAt)), ("@u", code.Used ? 1 : 0),
            ("@i", code.PublicId));
    }

    public async Task<IReadOnlyList<EnrollmentCodeRecord>> ListAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(PublicIdMigration, cancellationToken);
        return await ReadAllAsync(connection, null, $"SELECT {Columns} FROM enrollment_codes ORDER BY name", Read, cancellationToken);
    }

    public async Task<IReadOnlyList<EnrollmentCodeRecord>> ListByPublicIdAsync(string? publicId, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(PublicIdMigration, cancellationToken);
        return publicId is null
            ? await ReadAllAsync(connection, null, $"SELECT {Columns} FROM enrollment_codes WHERE public_id IS NULL ORDER BY name", Read, cancellationToken)
            : await ReadAllAsync(connection, null, $"SELECT {Columns} FROM enrollment_codes WHERE public_id = @i ORDER BY name", Read, cancellationToken, ("@i", publicId));
    }

    private static EnrollmentCodeRecord Read(DbDataReader r) =>
        new(r.GetString(0), (byte[])r.GetValue(1), (byte[])r.GetValue(2), r.Time(3), r.Long(4) != 0, r.NullableString(5));

    public async Task<bool> ConsumeAsync(string name, byte[] codeHash, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(PublicIdMigration, cancellationToken);
        // One conditional UPDATE: the database, not the caller, decides who consumed the code.
        return await ExecuteAsync(connection, null, "UPDATE enrollment_codes SET used = 1 WHERE name = @n AND code_hash = @h AND used = 0", cancellationToken,
            ("@n", name), ("@h", codeHash)) == 1;
    }

    public async Task RememberReplacedAsync(EnrollmentCodeRecord code, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        if (code.PublicId is null) return;
        await using var connection = await store.OpenAsync(ReplacedMigration, cancellationToken);
        // Expiries are all written in UTC in one format, so their text sorts as their time does.
        await ExecuteAsync(connection, null, "DELETE FROM replaced_enrollment_codes WHERE expires_at <= @now", cancellationToken, ("@now", Text(now.ToUniversalTime())));
        await ExecuteAsync(connection, null, """
            INSERT INTO replaced_enrollment_codes(public_id, code_hash, salt, expires_at) VALUES(@i, @h, @s, @e)
            ON CONFLICT(public_id) DO UPDATE SET code_hash = @h, salt = @s, expires_at = @e
            """, cancellationToken, ("@i", code.PublicId), ("@h", code.CodeHash), ("@s", code.Salt), ("@e", Text(code.ExpiresAt.ToUniversalTime())));
    }

    public async Task<EnrollmentCodeRecord?> FindReplacedAsync(string publicId, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(ReplacedMigration, cancellationToken);
        var rows = await ReadAllAsync(connection, null, "SELECT code_hash, salt, expires_at FROM replaced_enrollment_codes WHERE public_id = @i",
            r => new EnrollmentCodeRecord("", (byte[])r.GetValue(0), (byte[])r.GetValue(1), r.Time(2), Used: false, publicId), cancellationToken, ("@i", publicId));
        return rows.Count == 0 ? null : rows[0];
    }
}
