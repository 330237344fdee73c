using static Daiko.Home.Storage.StoreCommands;

namespace Daiko.Home.Storage;

/// <summary>A queued report; <see cref="MessageId"/> is fixed when it is queued, so a re-send is recognisably the same mail.</summary>
public sealed record OutboxMail(long Id, string MessageId, string To, string Subject, string Body, DateTimeOffset CreatedAt, int Attempts);

/// <summary>The mail outbox: reports wait here until the SMTP server accepted them.</summary>
public interface IMailOutboxStore
{
    /// <summary>Queues a mail; false (nothing queued) when one with the same Message-Id is already there.</summary>
    Task<bool> EnqueueAsync(string messageId, string to, string subject, string body, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Mails not yet sent, oldest first.</summary>
    Task<IReadOnlyList<OutboxMail>> PendingAsync(CancellationToken cancellationToken = default);

    Task<long> PendingCountAsync(CancellationToken cancellationToken = default);

    /// <summary>The newest mail queued (sent or not): its row id and when it was queued; null when none ever was.</summary>
    Task<(long Id, DateTimeOffset At)?> LastQueuedAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Takes <paramref name="id"/> for sending by <paramref name="claimant"/> until <paramref name="until"/>:
    /// false when it was sent, or another claimant holds it and its claim has not lapsed at
    /// <paramref name="now"/>. Several processes delivering one outbox (the nodes of a hosted deployment)
    /// each send a mail only after claiming it, so none is sent twice while its sender is alive.
    /// </summary>
    Task<bool> ClaimAsync(long id, string claimant, DateTimeOffset now, DateTimeOffset until, CancellationToken cancellationToken = default);

    /// <summary>Gives up <paramref name="claimant"/>'s claim on <paramref name="id"/> (its send failed: another may try at once).</summary>
    Task ReleaseAsync(long id, string claimant, CancellationToken cancellationToken = default);

    Task MarkSentAsync(long id, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Counts a failed delivery attempt of each mail.</summary>
    Task MarkAttemptAsync(IEnumerable<long> ids, CancellationToken cancellationToken = default);
}

public sealed class SqlMailOutboxStore(IHomeStore store) : IMailOutboxStore
{
    internal static readonly Migration Migration = new("mail_outbox/1", """
        CREATE TABLE IF NOT EXISTS mail_outbox (id {id}, message_id TEXT NOT NULL UNIQUE,
            recipient TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, sent_at TEXT)
        """);

    /// <summary>A mail is claimed by one sender at a time (until its claim lapses, in Unix milliseconds).</summary>
    internal static readonly Migration ClaimMigration = new("mail_outbox/2", """
        ALTER TABLE mail_outbox ADD COLUMN claimed_by TEXT;
        ALTER TABLE mail_outbox ADD COLUMN claimed_until {bigint};
        """, After: Migration);

    public async Task<bool> EnqueueAsync(string messageId, string to, string subject, string body, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(ClaimMigration, cancellationToken);
        return await ExecuteAsync(connection, null,
            "INSERT INTO mail_outbox(message_id, recipient, subject, body, created_at) VALUES(@m, @r, @s, @b, @t) ON CONFLICT(message_id) DO NOTHING",
            cancellationToken, ("@m", messageId), ("@r", to), ("@s", subject), ("@b", body), ("@t", Text(at))) == 1;
    }

    public async Task<IReadOnlyList<OutboxMail>> PendingAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(ClaimMigration, cancellationToken);
        return await ReadAllAsync(connection, null,
            "SELECT id, message_id, recipient, subject, body, created_at, attempts FROM mail_outbox WHERE sent_at IS NULL ORDER BY id",
            r => new OutboxMail(r.Long(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.Time(5), (int)r.Long(6)), cancellationToken);
    }

    public async Task<long> PendingCountAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(ClaimMigration, cancellationToken);
        return Convert.ToInt64(await ScalarAsync(connection, null, "SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL", cancellationToken),
            System.Globalization.CultureInfo.InvariantCulture);
    }

    public async Task<(long Id, DateTimeOffset At)?> LastQueuedAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(ClaimMigration, cancellationToken);
        var newest = await ReadAllAsync(connection, null, "SELECT id, created_at FROM mail_outbox ORDER BY id DESC LIMIT 1", r => (r.Long(0), r.Time(1)), cancellationToken);
        return newest.Count == 0 ? null : newest[0];
    }

    public async Task<bool> ClaimAsync(long id, string claimant, DateTimeOffset now, DateTimeOffset until, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(ClaimMigration, cancellationToken);
        return await ExecuteAsync(connection, null, """
            UPDATE mail_outbox SET claimed_by = @c, claimed_until = @u
            WHERE id = @i AND sent_at IS NULL AND (claimed_by IS NULL OR claimed_by = @c OR claimed_until < @n)
            """, cancellationToken, ("@c", claimant), ("@u", until.ToUnixTimeMilliseconds()), ("@i", id), ("@n", now.ToUnixTimeMilliseconds())) == 1;
    }

    public async Task ReleaseAsync(long id, string claimant, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(ClaimMigration, cancellationToken);
        await ExecuteAsync(connection, null, "UPDATE mail_outbox SET claimed_by = NULL, claimed_until = NULL WHERE id = @i AND claimed_by = @c",
            cancellationToken, ("@i", id), ("@c", claimant));
    }

    public async Task MarkSentAsync(long id, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(ClaimMigration, cancellationToken);
        await ExecuteAsync(connection, null, "UPDATE mail_outbox SET sent_at = @t, attempts = attempts + 1 WHERE id = @i AND sent_at IS NULL", cancellationToken,
            ("@t", Text(at)), ("@i", id));
    }

    public async Task MarkAttemptAsync(IEnumerable<long> ids, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.OpenAsync(ClaimMigration, cancellationToken);
        foreach (var id in ids)
        {
            await ExecuteAsync(connection, null, "UPDATE mail_outbox SET attempts = attempts + 1 WHERE id = @i", cancellationToken, ("@i", id));
        }
    }
}
