using System.Text.Json;
using Daiko.Cards;
using Daiko.Money;
using Daiko.Home.Hosting;
using Daiko.Home.Money;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Mail;

/// <summary>
/// F14: the purse's log mailed to the address in DIR/mail.json, every <c>interval</c> (counted from the
/// last report queued) and when a terminal asks. Reports go through the store's outbox (<see cref="ReportOutbox"/>),
/// so an SMTP outage delays one and never loses it; each log head is signed in the home card.
/// </summary>
/// <param name="settings">Where the settings are read instead of DIR/mail.json (a hosted owner's row); null from it falls back to the file.</param>
public sealed class PaymentReports(string directory, IHomeCard card, PurseLedger ledger, ReportOutbox outbox, ILogger logger, Func<MailSettings?>? settings = null)
{
    private const string FileName = "mail.json";

    /// <summary>Writes DIR/mail.json (what <c>daiko home mail set</c> stores; no secret in it).</summary>
    public static void SaveSettings(string directory, MailSettings settings) =>
        File.WriteAllText(Path.Combine(directory, FileName), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["smtp_host"] = settings.SmtpHost, ["smtp_port"] = settings.SmtpPort, ["from"] = settings.From, ["to"] = settings.To,
        }));

    /// <summary>The settings (the store's, else DIR/mail.json), read each time (the owner may change them while the server runs); null when none are set.</summary>
    public MailSettings? LoadSettings()
    {
        if (settings?.Invoke() is { } stored) return stored;
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var r = doc.RootElement;
        return new MailSettings(r.GetProperty("smtp_host").GetString()!, r.GetProperty("smtp_port").GetInt32(), r.GetProperty("from").GetString()!, r.GetProperty("to").GetString()!);
    }

    /// <summary>Queues a report of the purse log and delivers what is pending; returns (sent, pending).</summary>
    public async Task<(long Sent, long Pending)> MailNowAsync(CancellationToken cancellationToken)
    {
        var settings = LoadSettings() ?? throw new PurseException(PurseRefusal.Malformed, "no mail address is configured on the home server: its owner sets one with 'daiko home mail set --smtp HOST:PORT --from ADDRESS --to ADDRESS'");
        await outbox.EnqueueReportAsync(ledger, settings.To, card.CardId, cancellationToken);
        var sent = await outbox.DeliverAsync(settings, cancellationToken);
        return (sent, await outbox.PendingAsync(cancellationToken));
    }

    /// <summary>
    /// Sends a report every <paramref name="interval"/> (default daily) until cancelled, counted from the
    /// newest report in the store's outbox, not from this process's start: a server restarted (or a hosted
    /// owner unloaded and loaded again) more often than the interval still mails once it is due. It looks
    /// at its start and then every quarter interval, at least hourly (<see cref="DueAsync"/>), queues a due report
    /// whatever the card's state (with the card-signed head only while it is ready), and delivers what is pending at every look; a failed look is logged and the
    /// next one tries again.
    /// </summary>
    public async Task RunAsync(TimeSpan interval, TimeProvider time, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval / 4 < LookEvery ? interval / 4 : LookEvery, time);
        try
        {
            do
            {
                try
                {
                    if (LoadSettings() is not { } settings) continue;
                    // Queued whatever the card's state (its head signed only when it is ready): a report waiting for an
                    // unlocked card at one of these looks could wait for ever when a device unlocks, pays and locks within
                    // minutes, as a thief would.
                    if (await DueAsync(interval, time, cancellationToken) is { } messageId)
                    {
                        await outbox.EnqueueReportAsync(ledger, settings.To, card.CardId, cancellationToken, messageId);
                    }
                    await outbox.DeliverAsync(settings, cancellationToken);
                }
                catch (Exception e) when (!cancellationToken.IsCancellationRequested)
                {
                    // Whatever failed this look (the card, the store, the settings, the mail server), the next tries again:
                    // a loop that ended here would stop the owner's reports until the server restarted.
                    logger.ReportFailed(e.Message);
                }
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        catch (OperationCanceledException) { }
    }

    /// <summary>
    /// The Message-Id of the periodic report due now, or null: one is due an interval after the newest
    /// report queued, or, when none ever was, an interval after the purse's first entry (an empty purse has
    /// nothing to report). The id names the report it follows, so two nodes of a hosted deployment that
    /// find the same report due queue it once (the outbox keeps one mail a Message-Id).
    /// </summary>
    private async Task<string?> DueAsync(TimeSpan interval, TimeProvider time, CancellationToken cancellationToken)
    {
        var last = await outbox.LastQueuedAsync(cancellationToken);
        var since = last?.At ?? ledger.FirstEntryAt();
        if (since is null || time.GetUtcNow() - since < interval) return null;
        return $"{card.CardId[..16]}-after-{last?.Id ?? 0}@daiko.home";
    }

    /// <summary>The longest the periodic report waits before it looks whether one is due (and delivers what is pending).</summary>
    public static readonly TimeSpan LookEvery = TimeSpan.FromHours(1);
}
