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
    /// <summary>A code with this public id exists, but the secret is wrong (counts against the code).</summary>
    WrongSecret,
    /// <summary>The right secret of a code that a newer one for the same name replaced (before it would have expired).</summary>
    ReplacedCode,
}

/// <summary>Pending enrollment: a code issued for <paramref name="Name"/>, unused and valid until <paramref name="ExpiresAt"/>.</summary>
public sealed record PendingEnrollment(string Name, DateTimeOffset ExpiresAt);

/// <summary>What a device may be named: it appears in the server log, the audit log, the console and file names.</summary>
public static class DeviceName
{
    public const int MaxLength = 64;

    /// <summary>What is allowed, as one sentence.</summary>
    public const string Rule = "a device name is 1 to 64 characters, without control characters, '/' or '\\', and without spaces at either end";

    /// <summary><see cref="Rule"/> when <paramref name="name"/> breaks it (a newline would forge lines in the server log), else null.</summary>
    public static string? Problem(string? name) =>
        string.IsNullOrEmpty(name) || name.Length > MaxLength || name.Trim() != name
        || name.Any(c => char.IsControl(c) || c is '/' or '\\' || char.GetUnicodeCategory(c) is System.Globalization.UnicodeCategory.LineSeparator or System.Globalization.UnicodeCategory.ParagraphSeparator)
            ? Rule
            : null;
}

/// <summary>
/// The device registry of F2 (claims 8-9): device id → public key, enrollment by one-time code,
/// revocation. Codes are stored only as salted hashes under a public id, expire and are single use; a
/// code is found by its public id (one hash per attempt). Failed attempts are limited per source
/// address by <see cref="EnrollmentLimiter"/>. Kept in the home store's device,
/// enrollment-code and audit repositories (SQLite or PostgreSQL).
/// </summary>
public sealed class DeviceRegistry(IHomeStore store, TimeProvider? time = null)
{
    public static readonly TimeSpan CodeLifetime = TimeSpan.FromMinutes(10);

    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>
    /// Creates a one-time enrollment code for a new device named <paramref name="name"/>: returns the
    /// public id and secret (what the terminal sends; <see cref="Daiko.Protocol.EnrollmentCode.Compose"/> adds the pin part).
    /// </summary>
    public async Task<(string Code, DateTimeOffset ExpiresAt)> AddEnrollmentCodeAsync(string name, CancellationToken cancellationToken = default)
    {
        // (No parameter name: the message is shown as it is.)
        if (DeviceName.Problem(name) is { } problem) throw new ArgumentException(problem);
        if (await FindAsync(name, cancellationToken) is { Revoked: false }) throw new InvalidOperationException($"a device named '{name}' is already enrolled");
        var now = _time.GetUtcNow();
        // A code still pending for this name stops working; kept aside, its holder is told why (see RedeemCodeAsync).
        if ((await store.EnrollmentCodes.ListAsync(cancellationToken)).FirstOrDefault(c => c.Name == name) is { Used: false, PublicId: not null } earlier && earlier.ExpiresAt > now)
        {
            await store.EnrollmentCodes.RememberReplacedAsync(earlier, now, cancellationToken);
        }
        var (publicId, secret) = Daiko.Protocol.EnrollmentCode.NewIdAndSecret();
        while ((await store.EnrollmentCodes.ListByPublicIdAsync(publicId, cancellationToken)).Count > 0)
            (publicId, secret) = Daiko.Protocol.EnrollmentCode.NewIdAndSecret();
        var salt = RandomNumberGenerator.GetBytes(16);
        var expires = now + CodeLifetime;
        await store.EnrollmentCodes.PutAsync(new EnrollmentCodeRecord(name, HashCode(secret, salt), salt, expires, Used: false, publicId), cancellationToken);
        return (publicId + secret, expires);
    }

    /// <summary>The codes issued and neither used nor expired yet, by name.</summary>
    public async Task<IReadOnlyList<PendingEnrollment>> PendingAsync(CancellationToken cancellationToken = default)
    {
        var now = _time.GetUtcNow();
        return (await store.EnrollmentCodes.ListAsync(cancellationToken)).Where(c => !c.Used && c.ExpiresAt > now).Select(c => new PendingEnrollment(c.Name, c.ExpiresAt)).ToList();
    }

    /// <summary>The pending code for <paramref name="name"/> (that a new one would replace), or null.</summary>
    public async Task<PendingEnrollment?> PendingAsync(string name, CancellationToken cancellationToken = default) =>
        (await PendingAsync(cancellationToken)).FirstOrDefault(p => p.Name == name);

    private static byte[] HashCode(string code, byte[] salt) =>
        Rfc2898DeriveBytes.Pbkdf2(Encoding.ASCII.GetBytes(Daiko.Protocol.EnrollmentCode.Normalize(code)), salt, 100_000, HashAlgorithmName.SHA256, 32);

    /// <summary>
    /// Redeems a code (public id and secret, or an old code's secret alone): returns the device name it
    /// was issued for, or why not. A successful redemption consumes the code (exactly one of two racing
    /// redemptions wins). The code is found by its public id, so one attempt costs one hash; codes from
    /// before the public id are compared one by one. Failures are limited by the caller
    /// (<see cref="EnrollmentLimiter"/>).
    /// </summary>
    public async Task<(EnrollmentOutcome Outcome, string? Name)> RedeemCodeAsync(string code, CancellationToken cancellationToken = default)
    {
        if (Daiko.Protocol.EnrollmentCode.Parse(code) is not { } parsed) return (EnrollmentOutcome.UnknownCode, null);
        var now = _time.GetUtcNow();
        var rows = await store.EnrollmentCodes.ListByPublicIdAsync(parsed.PublicId, cancellationToken);
        // An old code (no public id) is compared with every old row: only with those it could still redeem,
        // so spent and expired ones cost no hash (such a code is then answered as unknown, not as used).
        if (parsed.PublicId is null) rows = rows.Where(r => !r.Used && r.ExpiresAt > now).ToList();
        foreach (var row in rows)
        {
            if (!CryptographicOperations.FixedTimeEquals(HashCode(parsed.Secret, row.Salt), row.CodeHash)) continue;
            if (row.Used) return (EnrollmentOutcome.UsedCode, null);
            if (row.ExpiresAt <= now) return (EnrollmentOutcome.ExpiredCode, null);
            return await store.EnrollmentCodes.ConsumeAsync(row.Name, row.CodeHash, cancellationToken)
                ? (EnrollmentOutcome.Enrolled, row.Name)
                : (EnrollmentOutcome.UsedCode, null);
        }
        if (parsed.PublicId is not null && rows.Count == 0 && await store.EnrollmentCodes.FindReplacedAsync(parsed.PublicId, cancellationToken) is { } replaced
            && CryptographicOperations.FixedTimeEquals(HashCode(parsed.Secret, replaced.Salt), replaced.CodeHash))
        {
            // Only the right secret learns why: a wrong one under this id is answered as any unknown code is.
            return (replaced.ExpiresAt <= now ? EnrollmentOutcome.ExpiredCode : EnrollmentOutcome.ReplacedCode, null);
        }
        return (parsed.PublicId is not null && rows.Count > 0 ? EnrollmentOutcome.WrongSecret : EnrollmentOutcome.UnknownCode, null);
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

    /// <summary>
    /// Of <paramref name="held"/> (devices a server holds something for: channels, cached secrets, sessions;
    /// listed before this call, so that one enrolled meanwhile is not among them), those no longer enrolled:
    /// revoked, or gone from the store. Judged against the enrolled devices rather than the revoked rows,
    /// since a revoked row goes when its name is enrolled again: a server whose looks failed for a while
    /// (they are only logged) would otherwise never cut the revoked device off. The server polls this.
    /// </summary>
    public async Task<IReadOnlyList<string>> NoLongerEnrolledAsync(IEnumerable<string> held, CancellationToken cancellationToken = default)
    {
        var listed = held.Distinct(StringComparer.Ordinal).ToList();
        if (listed.Count == 0) return [];
        var live = await store.Devices.LiveIdsAsync(cancellationToken);
        return listed.Where(id => !live.Contains(id)).ToList();
    }

    /// <summary>Told of every audited event as it is recorded (the server logs each one; never a secret).</summary>
    public Action<string?, string, string?, string?, string>? Audited { get; set; }

    /// <summary>Appends to the audit log: who, what, with which market and mode, and the outcome. Never secrets.</summary>
    public Task AuditAsync(string? deviceId, string action, string? market, string? mode, string outcome, CancellationToken cancellationToken = default)
    {
        Audited?.Invoke(deviceId, action, market, mode, outcome);
        return store.Audit.AppendAsync(new AuditEntry(_time.GetUtcNow(), deviceId, action, market, mode, outcome), cancellationToken);
    }

    /// <summary>The refusals of strangers that reach the audit log (<see cref="StrangerRefusals"/>).</summary>
    private readonly StrangerRefusals _strangerRefusals = new(time);

    /// <summary>
    /// The refused connections of known devices (revoked ones) that reach the audit log: once a device a minute, with no cap
    /// over all of them (their number is the owner's doing), so that strangers spending the shared cap cannot hide them.
    /// </summary>
    private readonly StrangerRefusals _deviceRefusals = new(time, maxLinesPerWindow: int.MaxValue);

    /// <summary>
    /// Audits a refusal of a peer that has not authenticated, from <paramref name="source"/> (an address
    /// key, or the id of a revoked device whose key it holds): at most one line a source a minute, and few
    /// in all, each saying how many went unwritten before it; a stranger cannot make the home server write
    /// at will, nor push the owner's older lines out of a bounded audit log.
    /// </summary>
    /// <param name="deviceId">the device the line names (a revoked one's connection), else none</param>
    public Task AuditStrangerRefusalAsync(string source, string action, string outcome, CancellationToken cancellationToken = default, string? deviceId = null)
    {
        var (write, unwritten) = (deviceId is null ? _strangerRefusals : _deviceRefusals).Note(source);
        if (!write) return Task.CompletedTask;
        return AuditAsync(deviceId, action, null, null, unwritten == 0 ? outcome : $"{outcome} (after {unwritten} refusal(s) of strangers not written)", cancellationToken);
    }

    /// <summary>
    /// Removes the audit lines past <paramref name="retention"/>, oldest first, and says so in a line of
    /// its own when it removed any, flushed to the disk at once (the removal was: its record must not be
    /// the one a power cut loses).
    /// </summary>
    public async Task<AuditPrune> PruneAuditAsync(AuditRetention retention, CancellationToken cancellationToken = default)
    {
        var prune = await store.Audit.PruneAsync(retention.Cutoff(_time.GetUtcNow()), retention.MaxLines, retention.KeepNewest, cancellationToken);
        if (prune.Removed == 0) return prune;
        await AuditAsync(null, "audit-pruned", null, null, retention.Outcome(prune), cancellationToken);
        await store.Writes.FlushAsync(cancellationToken);
        return prune;
    }

    /// <summary>The newest <paramref name="limit"/> audit entries, newest first.</summary>
    public Task<IReadOnlyList<AuditEntry>> AuditLogAsync(int limit = 100, CancellationToken cancellationToken = default) => store.Audit.RecentAsync(limit, cancellationToken);

    /// <summary>The whole audit log searched: see <see cref="IAuditStore.SearchAsync"/>.</summary>
    public Task<(IReadOnlyList<AuditEntry> Entries, long Total)> SearchAuditAsync(AuditFilter filter, int skip, int take, CancellationToken cancellationToken = default) =>
        store.Audit.SearchAsync(filter, skip, take, cancellationToken);
}
