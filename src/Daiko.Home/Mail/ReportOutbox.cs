using System.Text;
using Daiko.Home.Money;
using Daiko.Money;
using Daiko.Home.Storage;
using MailKit.Net.Smtp;
using MailKit.Security;
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
/// same Message-Id (mail systems de-duplicate on it) rather than a second report. Each mail is claimed
/// in the store before it is sent (<see cref="IMailOutboxStore.ClaimAsync"/>), so several processes
/// delivering one outbox at once (the nodes of a hosted deployment) send it once; only a sender that
/// dies between the SMTP server's acceptance and the mark leaves it to be sent again, under the same
/// Message-Id, once its claim lapses.
/// </summary>
public sealed class ReportOutbox(IMailOutboxStore outbox, TimeProvider? time = null)
{
    /// <summary>How long a claim on a mail lasts: far longer than one SMTP exchange (its timeout is 10 s a command).</summary>
    public static readonly TimeSpan ClaimLease = TimeSpan.FromMinutes(10);

    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>The report's line in place of the card-signed head when the card was not ready to sign.</summary>
    public const string NoSignedHead =
        "card-signed head: none (no device had the home card unlocked when this report was made; a report made while one has carries it)";

    /// <summary>Queues a report of the whole log (entries, balances, the card-signed head when the card is ready) for <paramref name="to"/>.</summary>
    /// <param name="messageId">the report's Message-Id (a fresh one when null); one already queued is not queued again.</param>
    public async Task<string> EnqueueReportAsync(PurseLedger ledger, string to, string cardId, CancellationToken cancellationToken = default, string? messageId = null)
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
        body.AppendLine(ledger.SignedHeadIfReady() is { } signed
            ? $"card-signed head (COSE_Sign1, base64): {Convert.ToBase64String(signed)}"
            : NoSignedHead);
        messageId ??= $"{Guid.NewGuid():N}@daiko.home";
        await outbox.EnqueueAsync(messageId, to, $"Daiko payment log: {history.Count} entries", body.ToString(), _time.GetUtcNow(), cancellationToken);
        return messageId;
    }

    public Task<long> PendingAsync(CancellationToken cancellationToken = default) => outbox.PendingCountAsync(cancellationToken);

    /// <summary>The newest report queued (the store's, so a restart or another node sees it): its row id and time, or null.</summary>
    public Task<(long Id, DateTimeOffset At)?> LastQueuedAsync(CancellationToken cancellationToken = default) => outbox.LastQueuedAsync(cancellationToken);

    /// <summary>Addresses as RFC 5322 has them, with a domain (the parser's default takes far more).</summary>
    private static readonly ParserOptions StrictAddresses = new() { AddressParserComplianceMode = RfcComplianceMode.Strict, AllowAddressesWithoutDomain = false };

    /// <summary>Whether <paramref name="text"/> is a mail address the report can be sent from or to (what <c>mail set</c> accepts).</summary>
    public static bool IsMailAddress(string text) => MailboxAddress.TryParse(StrictAddresses, text, out _);

    /// <summary>A mail address of the settings; a sentence naming it when it is none.</summary>
    private static MailboxAddress Address(string text, string role) =>
        MailboxAddress.TryParse(StrictAddresses, text, out var address) ? address
            : throw new PurseException(PurseRefusal.Malformed, $"the payment report's {role} address '{text}' is not a mail address: the owner sets it with 'daiko home mail set'");

    /// <summary>
    /// Sends every pending report this sender can claim (one another sender is sending is left to it);
    /// returns how many went. An SMTP failure leaves them queued. A queued report whose address is not
    /// one (queued before addresses were checked) goes to the owner's address in
    /// <paramref name="settings"/>: reports are the owner's, and one such row must not hold back the rest.
    /// </summary>
    public async Task<int> DeliverAsync(MailSettings settings, CancellationToken cancellationToken)
    {
        var from = Address(settings.From, "From");
        var owner = Address(settings.To, "To");
        var pending = await outbox.PendingAsync(cancellationToken);
        if (pending.Count == 0) return 0;
        using var smtp = new SmtpClient { Timeout = 10_000 };
        try
        {
            await smtp.ConnectAsync(settings.SmtpHost, settings.SmtpPort, settings.UseStartTls ? SecureSocketOptions.StartTls : SecureSocketOptions.None, cancellationToken);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or SmtpProtocolException or SslHandshakeException or TimeoutException)
        {
            await outbox.MarkAttemptAsync(pending.Select(p => p.Id), CancellationToken.None);
            return 0;
        }
        var sent = 0;
        // Each delivery claims under a name of its own: two at once in one process part like two processes.
        var claimant = Guid.NewGuid().ToString("N");
        foreach (var item in pending)
        {
            var now = _time.GetUtcNow();
            if (!await outbox.ClaimAsync(item.Id, claimant, now, now + ClaimLease, cancellationToken)) continue;
            var accepted = false;
            try
            {
                var message = new MimeMessage { Subject = item.Subject, MessageId = item.MessageId };
                message.From.Add(from);
                message.To.Add(MailboxAddress.TryParse(StrictAddresses, item.To, out var to) ? to : owner);
                message.Body = new TextPart("plain") { Text = item.Body };
                try
                {
                    await smtp.SendAsync(message, cancellationToken);
                }
                catch (SmtpCommandException e) when (e.ErrorCode == SmtpErrorCode.RecipientNotAccepted)
                {
                    // The server refused this mail's recipient, not the connection: the others still go.
                    await outbox.MarkAttemptAsync([item.Id], CancellationToken.None);
                    continue;
                }
                catch (Exception e) when (e is SmtpCommandException or SmtpProtocolException or IOException)
                {
                    await outbox.MarkAttemptAsync([item.Id], CancellationToken.None);
                    break;
                }
                accepted = true;
                await outbox.MarkSentAsync(item.Id, _time.GetUtcNow(), CancellationToken.None);
                sent++;
            }
            finally
            {
                // Not sent, whatever stopped it: the next delivery may take it at once, not in ten minutes. One the
                // SMTP server took but that could not be marked keeps its claim, so no other sender repeats it
                // before the claim lapses.
                if (!accepted) await outbox.ReleaseAsync(item.Id, claimant, CancellationToken.None);
            }
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
}
