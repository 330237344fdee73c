using System.Security.Cryptography;
using System.Text;
using Microsoft.Data.Sqlite;

namespace Daiko.Home.Devices;

public sealed record Device(string Id, string Name, byte[] PublicKeyInfo, DateTimeOffset EnrolledAt, DateTimeOffset? RevokedAt)
{
    public bool Revoked => RevokedAt is not null;
}

public enum EnrollmentOutcome
{
    Enrolled,
    UnknownCode,
    ExpiredCode,
    UsedCode,
    TooManyAttempts,
    BadProof,
    /// <summary>A code with this public id exists, but the secret is wrong (counts against the code).</summary>
    WrongSecret,
}

/// <summary>
/// The device registry of F2 (claims 8-9): device id → public key, enrollment by one-time code,
/// revocation. Codes are stored only as salted hashes under a public id, expire and are single use; a
/// code is found by its public id (one hash per attempt). Failed attempts are limited per source
/// address and per code by <see cref="EnrollmentLimiter"/>. Kept in the home store (SQLite).
/// </summary>
public sealed class DeviceRegistry
{
    public static readonly TimeSpan CodeLifetime = TimeSpan.FromMinutes(10);

    private readonly string _connectionString;
    private readonly TimeProvider _time;

    public DeviceRegistry(string databasePath, TimeProvider? time = null)
    {
        _connectionString = Storage.HomeDatabase.ConnectionString(databasePath);
        _time = time ?? TimeProvider.System;
        Execute("""
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, spki BLOB NOT NULL,
                enrolled_at TEXT NOT NULL, revoked_at TEXT);
            CREATE TABLE IF NOT EXISTS enrollment_codes (name TEXT PRIMARY KEY, code_hash BLOB NOT NULL, salt BLOB NOT NULL,
                expires_at TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS enrollment_failures (at TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, device TEXT,
                action TEXT NOT NULL, market TEXT, mode TEXT, outcome TEXT NOT NULL);
            """);
        AddPublicIdColumn();
    }

    /// <summary>Stores from before the public id get the column; their codes (no id) stay redeemable.</summary>
    private void AddPublicIdColumn()
    {
        using var c = Open();
        using var check = c.CreateCommand();
        check.CommandText = "SELECT COUNT(*) FROM pragma_table_info('enrollment_codes') WHERE name = 'public_id'";
        if ((long)check.ExecuteScalar()! == 0)
        {
            using var alter = c.CreateCommand();
            alter.CommandText = "ALTER TABLE enrollment_codes ADD COLUMN public_id TEXT";
            alter.ExecuteNonQuery();
        }
        using var index = c.CreateCommand();
        index.CommandText = "CREATE INDEX IF NOT EXISTS enrollment_codes_public_id ON enrollment_codes(public_id)";
        index.ExecuteNonQuery();
    }

    private SqliteConnection Open() => Storage.HomeDatabase.Open(_connectionString);

    private void Execute(string sql, params (string, object?)[] parameters)
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (k, v) in parameters) cmd.Parameters.AddWithValue(k, v ?? DBNull.Value);
        cmd.ExecuteNonQuery();
    }

    /// <summary>
    /// Creates a one-time enrollment code for a new device named <paramref name="name"/>: returns the
    /// public id and secret (what the terminal sends; <see cref="Daiko.Protocol.EnrollmentCode.Compose"/> adds the pin part).
    /// </summary>
    public (string Code, DateTimeOffset ExpiresAt) AddEnrollmentCode(string name)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Length > 64) throw new ArgumentException("a device name must be 1 to 64 characters", nameof(name));
        if (Find(name) is { Revoked: false }) throw new InvalidOperationException($"a device named '{name}' is already enrolled");
        var (publicId, secret) = Daiko.Protocol.EnrollmentCode.NewIdAndSecret();
        while (PendingCodeUses(publicId)) (publicId, secret) = Daiko.Protocol.EnrollmentCode.NewIdAndSecret();
        var salt = RandomNumberGenerator.GetBytes(16);
        var expires = _time.GetUtcNow() + CodeLifetime;
        Execute("INSERT INTO enrollment_codes(name, code_hash, salt, expires_at, used, public_id) VALUES($n, $h, $s, $e, 0, $i) ON CONFLICT(name) DO UPDATE SET code_hash = $h, salt = $s, expires_at = $e, used = 0, public_id = $i",
            ("$n", name), ("$h", HashCode(secret, salt)), ("$s", salt), ("$e", expires.ToString("O")), ("$i", publicId));
        return (publicId + secret, expires);
    }

    private bool PendingCodeUses(string publicId)
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT COUNT(*) FROM enrollment_codes WHERE public_id = $i";
        cmd.Parameters.AddWithValue("$i", publicId);
        return (long)cmd.ExecuteScalar()! > 0;
    }

    private static byte[] HashCode(string code, byte[] salt) =>
        Rfc2898DeriveBytes.Pbkdf2(Encoding.ASCII.GetBytes(Daiko.Protocol.EnrollmentCode.Normalize(code)), salt, 100_000, HashAlgorithmName.SHA256, 32);

    /// <summary>
    /// Redeems a code (public id and secret, or an old code's secret alone): returns the device name it
    /// was issued for, or why not. A successful redemption consumes the code. The code is found by its
    /// public id, so one attempt costs one hash; codes from before the public id are compared one by one.
    /// </summary>
    public (EnrollmentOutcome Outcome, string? Name) RedeemCode(string code)
    {
        if (Daiko.Protocol.EnrollmentCode.Parse(code) is not { } parsed) return (EnrollmentOutcome.UnknownCode, null);
        var now = _time.GetUtcNow();
        using var c = Open();
        using var tx = c.BeginTransaction();
        var rows = new List<(string Name, byte[] Hash, byte[] Salt, DateTimeOffset Expires, bool Used)>();
        using (var select = c.CreateCommand())
        {
            select.Transaction = tx;
            select.CommandText = parsed.PublicId is null
                ? "SELECT name, code_hash, salt, expires_at, used FROM enrollment_codes WHERE public_id IS NULL"
                : "SELECT name, code_hash, salt, expires_at, used FROM enrollment_codes WHERE public_id = $i";
            select.Parameters.AddWithValue("$i", (object?)parsed.PublicId ?? DBNull.Value);
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                rows.Add((reader.GetString(0), (byte[])reader[1], (byte[])reader[2], DateTimeOffset.Parse(reader.GetString(3), System.Globalization.CultureInfo.InvariantCulture), reader.GetInt32(4) != 0));
            }
        }
        foreach (var row in rows)
        {
            if (!CryptographicOperations.FixedTimeEquals(HashCode(parsed.Secret, row.Salt), row.Hash)) continue;
            if (row.Used) return (EnrollmentOutcome.UsedCode, null);
            if (row.Expires <= now) return (EnrollmentOutcome.ExpiredCode, null);
            using var consume = c.CreateCommand();
            consume.Transaction = tx;
            consume.CommandText = "UPDATE enrollment_codes SET used = 1 WHERE name = $n";
            consume.Parameters.AddWithValue("$n", row.Name);
            consume.ExecuteNonQuery();
            tx.Commit();
            return (EnrollmentOutcome.Enrolled, row.Name);
        }
        return (parsed.PublicId is not null && rows.Count > 0 ? EnrollmentOutcome.WrongSecret : EnrollmentOutcome.UnknownCode, null);
    }

    public Device Register(string name, byte[] publicKeyInfo)
    {
        var id = Convert.ToHexString(SHA256.HashData(publicKeyInfo))[..16].ToLowerInvariant();
        Execute("DELETE FROM devices WHERE name = $n AND revoked_at IS NOT NULL", ("$n", name));
        Execute("INSERT INTO devices(id, name, spki, enrolled_at) VALUES($i, $n, $k, $a)",
            ("$i", id), ("$n", name), ("$k", publicKeyInfo), ("$a", _time.GetUtcNow().ToString("O")));
        return Find(name)!;
    }

    public Device? Find(string name) => Query("SELECT id, name, spki, enrolled_at, revoked_at FROM devices WHERE name = $v", name).FirstOrDefault();

    public Device? FindById(string id) => Query("SELECT id, name, spki, enrolled_at, revoked_at FROM devices WHERE id = $v", id).FirstOrDefault();

    public IReadOnlyList<Device> List() => Query("SELECT id, name, spki, enrolled_at, revoked_at FROM devices ORDER BY name", null);

    /// <summary>Revokes a device; the running home server notices within its poll interval.</summary>
    public bool Revoke(string name)
    {
        var device = Find(name);
        if (device is null || device.Revoked) return false;
        Execute("UPDATE devices SET revoked_at = $a WHERE name = $n", ("$a", _time.GetUtcNow().ToString("O")), ("$n", name));
        Audit(device.Id, "revoke", null, null, "revoked");
        return true;
    }

    /// <summary>Ids of devices revoked so far (the server polls this).</summary>
    public IReadOnlySet<string> RevokedIds() => List().Where(d => d.Revoked).Select(d => d.Id).ToHashSet();

    /// <summary>Appends to the audit log: who, what, with which market and mode, and the outcome. Never secrets.</summary>
    /// <summary>Told of every audited event as it is recorded (the server logs each one; never a secret).</summary>
    public Action<string?, string, string?, string?, string>? Audited { get; set; }

    public void Audit(string? deviceId, string action, string? market, string? mode, string outcome)
    {
        Audited?.Invoke(deviceId, action, market, mode, outcome);
        Execute("INSERT INTO audit(at, device, action, market, mode, outcome) VALUES($t, $d, $a, $m, $o, $r)",
            ("$t", _time.GetUtcNow().ToString("O")), ("$d", deviceId), ("$a", action), ("$m", market), ("$o", mode), ("$r", outcome));
    }

    public IReadOnlyList<(DateTimeOffset At, string? Device, string Action, string? Market, string? Mode, string Outcome)> AuditLog(int limit = 100)
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT at, device, action, market, mode, outcome FROM audit ORDER BY id DESC LIMIT $l";
        cmd.Parameters.AddWithValue("$l", limit);
        using var r = cmd.ExecuteReader();
        var list = new List<(DateTimeOffset, string?, string, string?, string?, string)>();
        while (r.Read())
        {
            list.Add((DateTimeOffset.Parse(r.GetString(0), System.Globalization.CultureInfo.InvariantCulture), r.IsDBNull(1) ? null : r.GetString(1), r.GetString(2),
                r.IsDBNull(3) ? null : r.GetString(3), r.IsDBNull(4) ? null : r.GetString(4), r.GetString(5)));
        }
        return list;
    }

    private List<Device> Query(string sql, string? value)
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        if (value is not null) cmd.Parameters.AddWithValue("$v", value);
        using var r = cmd.ExecuteReader();
        var list = new List<Device>();
        while (r.Read())
        {
            list.Add(new Device(r.GetString(0), r.GetString(1), (byte[])r[2], DateTimeOffset.Parse(r.GetString(3), System.Globalization.CultureInfo.InvariantCulture),
                r.IsDBNull(4) ? null : DateTimeOffset.Parse(r.GetString(4), System.Globalization.CultureInfo.InvariantCulture)));
        }
        return list;
    }
}
