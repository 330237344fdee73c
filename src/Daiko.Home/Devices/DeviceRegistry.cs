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
}

/// <summary>
/// The device registry of F2 (claims 8-9): device id → public key, enrollment by one-time code,
/// revocation. Codes are stored only as salted hashes, expire, are single use, and every failed
/// attempt counts against a global limit per minute. Kept in the home store (SQLite).
/// </summary>
public sealed class DeviceRegistry
{
    public static readonly TimeSpan CodeLifetime = TimeSpan.FromMinutes(10);
    public const int MaxFailedAttemptsPerMinute = 10;

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

    /// <summary>Creates a one-time enrollment code for a new device named <paramref name="name"/>.</summary>
    public (string Code, DateTimeOffset ExpiresAt) AddEnrollmentCode(string name)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Length > 64) throw new ArgumentException("a device name must be 1 to 64 characters", nameof(name));
        if (Find(name) is { Revoked: false }) throw new InvalidOperationException($"a device named '{name}' is already enrolled");
        // 12 characters of Crockford base32: 60 bits of secret.
        const string alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        var chars = new char[12];
        for (var i = 0; i < chars.Length; i++) chars[i] = alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)];
        var code = new string(chars);
        var salt = RandomNumberGenerator.GetBytes(16);
        var expires = _time.GetUtcNow() + CodeLifetime;
        Execute("INSERT INTO enrollment_codes(name, code_hash, salt, expires_at, used) VALUES($n, $h, $s, $e, 0) ON CONFLICT(name) DO UPDATE SET code_hash = $h, salt = $s, expires_at = $e, used = 0",
            ("$n", name), ("$h", HashCode(code, salt)), ("$s", salt), ("$e", expires.ToString("O")));
        return (code, expires);
    }

    private static byte[] HashCode(string code, byte[] salt) =>
        Rfc2898DeriveBytes.Pbkdf2(Encoding.ASCII.GetBytes(Daiko.Protocol.EnrollmentCode.Normalize(code)), salt, 100_000, HashAlgorithmName.SHA256, 32);

    /// <summary>
    /// Redeems a code: returns the device name it was issued for, or why not. A successful
    /// redemption consumes the code; failures are rate-limited.
    /// </summary>
    public (EnrollmentOutcome Outcome, string? Name) RedeemCode(string code)
    {
        var now = _time.GetUtcNow();
        using var c = Open();
        using var tx = c.BeginTransaction();
        using (var count = c.CreateCommand())
        {
            count.Transaction = tx;
            count.CommandText = "SELECT COUNT(*) FROM enrollment_failures WHERE at > $since";
            count.Parameters.AddWithValue("$since", now.AddMinutes(-1).ToString("O"));
            if ((long)count.ExecuteScalar()! >= MaxFailedAttemptsPerMinute) return (EnrollmentOutcome.TooManyAttempts, null);
        }
        var rows = new List<(string Name, byte[] Hash, byte[] Salt, DateTimeOffset Expires, bool Used)>();
        using (var select = c.CreateCommand())
        {
            select.Transaction = tx;
            select.CommandText = "SELECT name, code_hash, salt, expires_at, used FROM enrollment_codes";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                rows.Add((reader.GetString(0), (byte[])reader[1], (byte[])reader[2], DateTimeOffset.Parse(reader.GetString(3), System.Globalization.CultureInfo.InvariantCulture), reader.GetInt32(4) != 0));
            }
        }
        foreach (var row in rows)
        {
            if (!CryptographicOperations.FixedTimeEquals(HashCode(code, row.Salt), row.Hash)) continue;
            if (row.Used) return Fail(EnrollmentOutcome.UsedCode);
            if (row.Expires <= now) return Fail(EnrollmentOutcome.ExpiredCode);
            using var consume = c.CreateCommand();
            consume.Transaction = tx;
            consume.CommandText = "UPDATE enrollment_codes SET used = 1 WHERE name = $n";
            consume.Parameters.AddWithValue("$n", row.Name);
            consume.ExecuteNonQuery();
            tx.Commit();
            return (EnrollmentOutcome.Enrolled, row.Name);
        }
        return Fail(EnrollmentOutcome.UnknownCode);

        (EnrollmentOutcome, string?) Fail(EnrollmentOutcome outcome)
        {
            using var insert = c.CreateCommand();
            insert.Transaction = tx;
            insert.CommandText = "INSERT INTO enrollment_failures(at) VALUES($a)";
            insert.Parameters.AddWithValue("$a", now.ToString("O"));
            insert.ExecuteNonQuery();
            tx.Commit();
            return (outcome, null);
        }
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
