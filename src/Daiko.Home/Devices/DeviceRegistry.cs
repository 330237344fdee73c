using System.Security.Cryptography;
using System.Text;
using Daiko.Home.Storage;

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
/// attempt counts against a global limit per minute. Kept in the home store's device, enrollment-code
/// and audit repositories (SQLite or PostgreSQL).
/// </summary>
public sealed class DeviceRegistry(IHomeStore store, TimeProvider? time = null)
{
    public static readonly TimeSpan CodeLifetime = TimeSpan.FromMinutes(10);
    public const int MaxFailedAttemptsPerMinute = 10;

    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>Creates a one-time enrollment code for a new device named <paramref name="name"/>.</summary>
    public async Task<(string Code, DateTimeOffset ExpiresAt)> AddEnrollmentCodeAsync(string name, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Length > 64) throw new ArgumentException("a device name must be 1 to 64 characters", nameof(name));
        if (await FindAsync(name, cancellationToken) is { Revoked: false }) throw new InvalidOperationException($"a device named '{name}' is already enrolled");
        // 12 characters of Crockford base32: 60 bits of secret.
        const string alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        var chars = new char[12];
        for (var i = 0; i < chars.Length; i++) chars[i] = alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)];
        var code = new string(chars);
        var salt = RandomNumberGenerator.GetBytes(16);
        var expires = _time.GetUtcNow() + CodeLifetime;
        await store.EnrollmentCodes.PutAsync(new EnrollmentCodeRecord(name, HashCode(code, salt), salt, expires, Used: false), cancellationToken);
        return (code, expires);
    }

    private static byte[] HashCode(string code, byte[] salt) =>
        Rfc2898DeriveBytes.Pbkdf2(Encoding.ASCII.GetBytes(Daiko.Protocol.EnrollmentCode.Normalize(code)), salt, 100_000, HashAlgorithmName.SHA256, 32);

    /// <summary>
    /// Redeems a code: returns the device name it was issued for, or why not. A successful
    /// redemption consumes the code (exactly one of two racing redemptions wins); failures are rate-limited.
    /// </summary>
    public async Task<(EnrollmentOutcome Outcome, string? Name)> RedeemCodeAsync(string code, CancellationToken cancellationToken = default)
    {
        var now = _time.GetUtcNow();
        if (await store.EnrollmentCodes.FailuresSinceAsync(now.AddMinutes(-1), cancellationToken) >= MaxFailedAttemptsPerMinute)
            return (EnrollmentOutcome.TooManyAttempts, null);
        foreach (var row in await store.EnrollmentCodes.ListAsync(cancellationToken))
        {
            if (!CryptographicOperations.FixedTimeEquals(HashCode(code, row.Salt), row.CodeHash)) continue;
            if (row.Used) return await FailAsync(EnrollmentOutcome.UsedCode);
            if (row.ExpiresAt <= now) return await FailAsync(EnrollmentOutcome.ExpiredCode);
            return await store.EnrollmentCodes.ConsumeAsync(row.Name, row.CodeHash, cancellationToken)
                ? (EnrollmentOutcome.Enrolled, row.Name)
                : await FailAsync(EnrollmentOutcome.UsedCode);
        }
        return await FailAsync(EnrollmentOutcome.UnknownCode);

        async Task<(EnrollmentOutcome, string?)> FailAsync(EnrollmentOutcome outcome)
        {
            await store.EnrollmentCodes.RecordFailureAsync(now, cancellationToken);
            return (outcome, null);
        }
    }

    public async Task<Device> RegisterAsync(string name, byte[] publicKeyInfo, CancellationToken cancellationToken = default)
    {
        var id = Convert.ToHexString(SHA256.HashData(publicKeyInfo))[..16].ToLowerInvariant();
        var device = new Device(id, name, publicKeyInfo, _time.GetUtcNow(), null);
        if (!await store.Devices.AddAsync(device, cancellationToken))
            throw new InvalidOperationException($"a device named '{name}' or with this key is already enrolled");
        return device;
    }

    public Task<Device?> FindAsync(string name, CancellationToken cancellationToken = default) => store.Devices.FindByNameAsync(name, cancellationToken);

    public Task<Device?> FindByIdAsync(string id, CancellationToken cancellationToken = default) => store.Devices.FindByIdAsync(id, cancellationToken);

    public Task<IReadOnlyList<Device>> ListAsync(CancellationToken cancellationToken = default) => store.Devices.ListAsync(cancellationToken);

    /// <summary>Revokes a device; the running home server notices within its poll interval.</summary>
    public async Task<bool> RevokeAsync(string name, CancellationToken cancellationToken = default)
    {
        var device = await FindAsync(name, cancellationToken);
        if (device is null || !await store.Devices.RevokeAsync(name, _time.GetUtcNow(), cancellationToken)) return false;
        await AuditAsync(device.Id, "revoke", null, null, "revoked", cancellationToken);
        return true;
    }

    /// <summary>Ids of devices revoked so far (the server polls this).</summary>
    public Task<IReadOnlySet<string>> RevokedIdsAsync(CancellationToken cancellationToken = default) => store.Devices.RevokedIdsAsync(cancellationToken);

    /// <summary>Told of every audited event as it is recorded (the server logs each one; never a secret).</summary>
    public Action<string?, string, string?, string?, string>? Audited { get; set; }

    /// <summary>Appends to the audit log: who, what, with which market and mode, and the outcome. Never secrets.</summary>
    public Task AuditAsync(string? deviceId, string action, string? market, string? mode, string outcome, CancellationToken cancellationToken = default)
    {
        Audited?.Invoke(deviceId, action, market, mode, outcome);
        return store.Audit.AppendAsync(new AuditEntry(_time.GetUtcNow(), deviceId, action, market, mode, outcome), cancellationToken);
    }

    /// <summary>The newest <paramref name="limit"/> audit entries, newest first.</summary>
    public Task<IReadOnlyList<AuditEntry>> AuditLogAsync(int limit = 100, CancellationToken cancellationToken = default) => store.Audit.RecentAsync(limit, cancellationToken);
}
