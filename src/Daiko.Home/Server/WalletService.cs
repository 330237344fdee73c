using System.Security.Cryptography;
using System.Text.Json;
using Daiko.Cards;
using Daiko.Money;
using Daiko.Home.Hosting;
using Microsoft.Extensions.Logging;
using Daiko.Home.Mail;
using Daiko.Home.Money;
using Daiko.Home.Storage;

namespace Daiko.Home.Server;

/// <summary>
/// The wallet requests of the control channel (F12-F15): the purse lives in the home store and every
/// card message is signed in the home card. Markets and banks are the payees the owner declared, each
/// with its role (<see cref="PayeeDirectory"/>); reports go to the address in DIR/mail.json.
/// </summary>
public sealed class WalletService
{
    private readonly ILogger _logger;
    private readonly string _directory;
    private readonly IHomeCard _card;
    private readonly PurseLedger _ledger;
    private readonly ReportOutbox _outbox;

    public WalletService(string directory, IHomeCard card, TimeProvider time, Storage.IHomeStore store, ILogger logger)
    {
        _logger = logger;
        _directory = directory;
        _card = card;
        Payees = new PayeeDirectory(directory, new Storage.SqlPayeeStore(store), logger);
        _ledger = new PurseLedger(store, new HomeCardPurse(card), Payees.KeyOf, time);
        _outbox = new ReportOutbox(store.MailOutbox, time);
    }

    public PurseLedger Ledger => _ledger;

    /// <summary>The markets and banks this server knows, re-read while it runs.</summary>
    public PayeeDirectory Payees { get; }

    /// <summary>Declares a market or bank and its verification key in the home store (what <c>daiko home payee add</c> does).</summary>
    public static async Task AddPayeeAsync(string directory, string name, PayeeRole role, ECDsa publicKey, CancellationToken cancellationToken = default)
    {
        if (!PayeeDirectory.IsName(name)) throw new ArgumentException("a payee's name uses letters, digits, dots and dashes (it is the id in its money messages)", nameof(name));
        await new SqlPayeeStore(PurseStore.Sqlite(Hosting.HomeServer.DatabasePath(directory)))
            .AddAsync(new Payee(name, role, publicKey.ExportSubjectPublicKeyInfoPem(), DateTimeOffset.UtcNow), cancellationToken);
    }

    /// <summary>Queues a report of the purse log and delivers what is pending; returns (sent, pending).</summary>
    public async Task<(long Sent, long Pending)> MailReportNowAsync(CancellationToken cancellationToken)
    {
        var settings = LoadMailSettings() ?? throw new PurseException(PurseRefusal.Malformed, "no mail address is configured on the home server: its owner sets one with 'daiko home mail set --smtp HOST:PORT --from ADDRESS --to ADDRESS'");
        await _outbox.EnqueueReportAsync(_ledger, settings.To, _card.CardId, cancellationToken);
        var sent = await _outbox.DeliverAsync(settings, cancellationToken);
        return (sent, await _outbox.PendingAsync(cancellationToken));
    }

    /// <summary>Writes DIR/mail.json (what <c>daiko home mail set</c> stores; no secret in it).</summary>
    public static void SaveMailSettings(string directory, MailSettings settings) =>
        File.WriteAllText(Path.Combine(directory, "mail.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["smtp_host"] = settings.SmtpHost, ["smtp_port"] = settings.SmtpPort, ["from"] = settings.From, ["to"] = settings.To,
        }));

    public MailSettings? LoadMailSettings()
    {
        var path = Path.Combine(_directory, "mail.json");
        if (!File.Exists(path)) return null;
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var r = doc.RootElement;
        return new MailSettings(r.GetProperty("smtp_host").GetString()!, r.GetProperty("smtp_port").GetInt32(), r.GetProperty("from").GetString()!, r.GetProperty("to").GetString()!);
    }

    /// <summary>Sends a report every <paramref name="interval"/> (default daily) while the server runs.</summary>
    public async Task RunPeriodicReportsAsync(TimeSpan interval, TimeProvider time, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                if (LoadMailSettings() is not { } settings) continue;
                try
                {
                    if (_card.State == HomeCardState.CryptoReady) await _outbox.EnqueueReportAsync(_ledger, settings.To, _card.CardId, cancellationToken);
                    await _outbox.DeliverAsync(settings, cancellationToken);
                }
                catch (Exception e) when (e is CardNotReadyException or IOException or PurseException or System.Data.Common.DbException)
                {
                    _logger.ReportFailed(e.Message);
                }
            }
        }
        catch (OperationCanceledException) { }
    }
}
