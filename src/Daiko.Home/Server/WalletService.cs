using System.Security.Cryptography;
using System.Text.Json;
using Daiko.Cards;
using Daiko.Cards.Purse;
using Daiko.Home.Control;
using Daiko.Home.Mail;
using Daiko.Home.Money;

namespace Daiko.Home.Server;

/// <summary>
/// The wallet requests of the control channel (F12-F15): the purse lives in the home store and every
/// card message is signed in the home card. Markets and banks are known by the public keys in
/// DIR/payees/ID.pem; reports go to the address in DIR/mail.json.
/// </summary>
internal sealed class WalletService
{
    private readonly string _directory;
    private readonly HomeCard _card;
    private readonly PurseLedger _ledger;
    private readonly ReportOutbox _outbox;

    public WalletService(string directory, HomeCard card, TimeProvider time, Storage.IHomeStore? store = null)
    {
        _directory = directory;
        _card = card;
        _ledger = new PurseLedger(store ?? Storage.PurseStore.Sqlite(HomeServer.DatabasePath(directory)), new HomeCardPurse(card), PayeeKey, time);
        _outbox = new ReportOutbox(HomeServer.DatabasePath(directory), time);
    }

    public PurseLedger Ledger => _ledger;

    /// <summary>Registers a market's or bank's verification key.</summary>
    public static void AddPayee(string directory, string id, ECDsa publicKey)
    {
        var payees = Path.Combine(directory, "payees");
        Directory.CreateDirectory(payees);
        if (id.Any(ch => !char.IsLetterOrDigit(ch) && ch is not '.' and not '-')) throw new ArgumentException("a payee id uses letters, digits, dots and dashes", nameof(id));
        File.WriteAllText(Path.Combine(payees, id + ".pem"), publicKey.ExportSubjectPublicKeyInfoPem());
    }

    private ECDsa? PayeeKey(string id)
    {
        if (id.Any(ch => !char.IsLetterOrDigit(ch) && ch is not '.' and not '-')) return null;
        var path = Path.Combine(_directory, "payees", id + ".pem");
        if (!File.Exists(path)) return null;
        var key = ECDsa.Create();
        key.ImportFromPem(File.ReadAllText(path));
        return key;
    }

    public async Task HandleAsync(ControlMessage m, ControlConnection c, Func<Task<bool>> requireReady)
    {
        try
        {
            switch (m.Type)
            {
                case "wallet-balance":
                    await c.ReplyAsync(m, new ControlMessage("wallet-balance").Set("card_id", _card.CardId)
                        .Set("balances", _ledger.Currencies().Select(cur => (object)new List<object> { cur, _ledger.Balance(cur) }).ToList()));
                    return;
                case "wallet-history":
                    await c.ReplyAsync(m, new ControlMessage("wallet-history").Set("entries",
                        _ledger.History().Select(e => JsonSerializer.Serialize(new { seq = e.Sequence, at = e.At, kind = e.Kind, reference = e.Reference, amount = e.Amount, currency = e.Currency, balance = e.BalanceAfter })).ToList())
                        .Set("intact", _ledger.VerifyLog()));
                    return;
            }
            if (!await requireReady()) return;
            switch (m.Type)
            {
                case "wallet-pay":
                    await c.ReplyAsync(m, new ControlMessage("wallet-payment").Set("payment", _ledger.Pay(m.GetBytes("request"))));
                    break;
                case "wallet-refill":
                    await c.ReplyAsync(m, new ControlMessage("wallet-refill-ack").Set("ack", _ledger.Refill(m.GetBytes("refill"))));
                    break;
                case "wallet-cancel":
                {
                    var paymentId = m.GetString("payment_id");
                    var cancellation = _ledger.Cancel(paymentId);
                    await c.ReplyAsync(m, new ControlMessage("wallet-cancellation").Set("cancellation", cancellation).Set("market_url", _ledger.MarketUrlOf(paymentId)));
                    break;
                }
                case "wallet-confirm":
                    await c.ReplyAsync(m, new ControlMessage("wallet-credited").Set("balance", _ledger.ApplyConfirmation(m.GetBytes("confirmation"))));
                    break;
                case "wallet-mail":
                {
                    var settings = LoadMailSettings() ?? throw new PurseException(PurseRefusal.Malformed, "no mail address is configured on the home server: its owner sets one with 'daiko home mail set --smtp HOST:PORT --from ADDRESS --to ADDRESS'");
                    _outbox.EnqueueReport(_ledger, settings.To, _card.CardId);
                    var sent = await _outbox.DeliverAsync(settings, c.Closed);
                    await c.ReplyAsync(m, new ControlMessage("wallet-mailed").Set("sent", sent).Set("pending", _outbox.Pending()));
                    break;
                }
                default:
                    await c.ReplyErrorAsync(m, "unknown-request", $"the home server does not know request '{m.Type}'");
                    break;
            }
        }
        catch (PurseException e)
        {
            await c.ReplyErrorAsync(m, "purse-" + e.Refusal.ToString().ToLowerInvariant(), e.Message);
        }
        catch (CardNotReadyException e)
        {
            await c.ReplyErrorAsync(m, "card-not-ready", e.Message);
        }
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
                    if (_card.State == HomeCardState.CryptoReady) _outbox.EnqueueReport(_ledger, settings.To, _card.CardId);
                    await _outbox.DeliverAsync(settings, cancellationToken);
                }
                catch (Exception e) when (e is CardNotReadyException or IOException or PurseException)
                {
                }
            }
        }
        catch (OperationCanceledException) { }
    }
}
