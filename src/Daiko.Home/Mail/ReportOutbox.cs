using System.Text;
using Daiko.Home.Money;
using MailKit.Net.Smtp;
using MailKit.Security;
using Microsoft.Data.Sqlite;
using MimeKit;

namespace Daiko.Home.Mail;

/// <summary>Where payment-log reports go.</summary>
public sealed record MailSettings(string SmtpHost, int SmtpPort, string From, string To)
{
    public bool UseStartTls { get; init; }
}

/// <summary>
/// F14: the payment log is mailed to the user periodically and on demand. Reports are written to an
/// outbox table first, each with a fixed Message-Id, and marked sent only after the SMTP server
/// accepted them: an outage delays a report, never loses it, and a retry after a crash re-sends the
/// same Message-Id (mail systems de-duplicate on it) rather than a second report.
/// </summary>
public sealed class ReportOutbox
{
    private readonly string _connectionString;
    private readonly TimeProvider _time;

    public ReportOutbox(string databasePath, TimeProvider? time = null)
    {
        _connectionString = Storage.HomeDatabase.ConnectionString(databasePath);
        _time = time ?? TimeProvider.System;
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = """
            CREATE TABLE IF NOT EXISTS mail_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE,
                recipient TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, sent_at TEXT);
            """;
        cmd.ExecuteNonQuery();
    }

    private SqliteConnection Open() => Storage.HomeDatabase.Open(_connectionString);

    /// <summary>Queues a report of the whole log (entries, balances, the card-signed head) for <paramref name="to"/>.</summary>
    public string EnqueueReport(PurseLedger ledger, string to, string cardId)
    {
        var history = ledger.History();
        var body = new StringBuilder();
        body.AppendLine($"Daiko payment log of home card {cardId[..16]}, {_time.GetUtcNow():yyyy-MM-dd HH:mm} UTC");
        body.AppendLine();
        foreach (var e in history)
        {
            body.AppendLine($"{e.Sequence,5}  {e.At:yyyy-MM-dd HH:mm:ss}  {e.Kind,-12}  {e.Amount,10} {e.Currency}  balance {e.BalanceAfter,10}  {e.Reference}");
        }
        body.AppendLine();
        foreach (var currency in history.Select(e => e.Currency).Distinct())
        {
            body.AppendLine($"balance {currency}: {ledger.Balance(currency)}");
        }
        body.AppendLine($"log intact: {(ledger.VerifyLog() ? "yes" : "NO - the log was altered")}");
        body.AppendLine($"chain head: {(history.Count == 0 ? "(empty)" : history[^1].Hash)}");
        body.AppendLine($"card-signed head (COSE_Sign1, base64): {Convert.ToBase64String(ledger.SignedHead())}");
        var messageId = $"{Guid.NewGuid():N}@daiko.home";
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "INSERT INTO mail_outbox(message_id, recipient, subject, body, created_at) VALUES($m, $r, $s, $b, $t)";
        cmd.Parameters.AddWithValue("$m", messageId);
        cmd.Parameters.AddWithValue("$r", to);
        cmd.Parameters.AddWithValue("$s", $"Daiko payment log: {history.Count} entries");
        cmd.Parameters.AddWithValue("$b", body.ToString());
        cmd.Parameters.AddWithValue("$t", _time.GetUtcNow().ToString("O"));
        cmd.ExecuteNonQuery();
        return messageId;
    }

    public int Pending()
    {
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL";
        return (int)(long)cmd.ExecuteScalar()!;
    }

    /// <summary>Sends every pending report; returns how many went. An SMTP failure leaves them queued.</summary>
    public async Task<int> DeliverAsync(MailSettings settings, CancellationToken cancellationToken)
    {
        var pending = new List<(long Id, string MessageId, string To, string Subject, string Body)>();
        using (var c = Open())
        using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = "SELECT id, message_id, recipient, subject, body FROM mail_outbox WHERE sent_at IS NULL ORDER BY id";
            using var r = cmd.ExecuteReader();
            while (r.Read()) pending.Add((r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4)));
        }
        if (pending.Count == 0) return 0;
        using var smtp = new SmtpClient { Timeout = 10_000 };
        try
        {
            await smtp.ConnectAsync(settings.SmtpHost, settings.SmtpPort, settings.UseStartTls ? SecureSocketOptions.StartTls : SecureSocketOptions.None, cancellationToken);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or SmtpProtocolException or SslHandshakeException or TimeoutException)
        {
            MarkAttempt(pending.Select(p => p.Id));
            return 0;
        }
        var sent = 0;
        foreach (var item in pending)
        {
            var message = new MimeMessage { Subject = item.Subject, MessageId = item.MessageId };
            message.From.Add(MailboxAddress.Parse(settings.From));
            message.To.Add(MailboxAddress.Parse(item.To));
            message.Body = new TextPart("plain") { Text = item.Body };
            try
            {
                await smtp.SendAsync(message, cancellationToken);
            }
            catch (Exception e) when (e is SmtpCommandException or SmtpProtocolException or IOException)
            {
                MarkAttempt([item.Id]);
                break;
            }
            using var c = Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "UPDATE mail_outbox SET sent_at = $t, attempts = attempts + 1 WHERE id = $i";
            cmd.Parameters.AddWithValue("$t", _time.GetUtcNow().ToString("O"));
            cmd.Parameters.AddWithValue("$i", item.Id);
            cmd.ExecuteNonQuery();
            sent++;
        }
        try
        {
            await smtp.DisconnectAsync(true, cancellationToken);
        }
        catch (Exception e) when (e is IOException or SmtpProtocolException or SmtpCommandException or OperationCanceledException)
        {
            // The reports are sent and marked: a server that drops QUIT costs nothing.
        }
        return sent;
    }

    private void MarkAttempt(IEnumerable<long> ids)
    {
        using var c = Open();
        foreach (var id in ids)
        {
            using var cmd = c.CreateCommand();
            cmd.CommandText = "UPDATE mail_outbox SET attempts = attempts + 1 WHERE id = $i";
            cmd.Parameters.AddWithValue("$i", id);
            cmd.ExecuteNonQuery();
        }
    }
}
