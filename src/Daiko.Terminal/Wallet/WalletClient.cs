using System.Net.Http.Headers;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Terminal.Http;
using Daiko.Terminal.Sessions;

namespace Daiko.Terminal.Wallet;

/// <summary>
/// The terminal's wallet (F12-F15): it carries money messages between markets, banks and the home card.
/// The terminal signs nothing and holds no money: the card signs in the home server; markets and banks
/// are reached through delegated sessions, so they see the user's certificate.
/// </summary>
public sealed class WalletClient(ControlConnection control, DelegationMode mode = DelegationMode.Auto)
{
    private HttpClient Http() => new(new SessionHttpHandler(async (host, port, ct) =>
        (await new DelegatedConnector(control).ConnectAsync(host, port, mode, cancellationToken: ct)).Stream))
    {
        Timeout = TimeSpan.FromSeconds(60),
    };

    public async Task<(string CardId, IReadOnlyList<(string Currency, long Amount)> Balances)> BalanceAsync(CancellationToken ct)
    {
        var reply = await control.RequestAsync<WalletBalanceReply>(new WalletBalanceRequest(), ct);
        return (reply.CardId, reply.Balances.Select(b => (b.Currency, b.Amount)).ToList());
    }

    public async Task<(IReadOnlyList<string> Entries, bool Intact)> HistoryAsync(CancellationToken ct)
    {
        // The log comes in pages; a page's "last" is where the next one starts.
        var entries = new List<string>();
        var after = 0L;
        while (true)
        {
            var reply = await control.RequestAsync<WalletHistoryReply>(new WalletHistoryRequest(after), ct);
            entries.AddRange(reply.Entries);
            if (!reply.More) return (entries, reply.Intact);
            if (reply.Last <= after) throw new ControlErrorException(ErrorCode.BadRequest, "the home server's history page did not move forward");
            after = reply.Last;
        }
    }

    /// <summary>Pays order <paramref name="order"/> at <paramref name="market"/>; returns the market's answer.</summary>
    public async Task<(string PaymentId, string MarketAnswer)> PayAsync(Uri market, string order, CancellationToken ct)
    {
        using var http = Http();
        var request = await http.GetByteArrayAsync(new Uri(market, $"orders/{Uri.EscapeDataString(order)}"), ct);
        var reply = await control.RequestAsync<WalletPaymentReply>(new WalletPayRequest(request), ct);
        var (payment, paymentId) = (reply.Payment, reply.PaymentId);
        return (paymentId, await PostAsync(http, new Uri(market, "payments"), payment, ct));
    }

    /// <summary>Asks <paramref name="bank"/> for a refill of the card, has the card credit it, and returns the ack to the bank.</summary>
    public async Task<string> RefillAsync(Uri bank, long amount, string currency, CancellationToken ct)
    {
        var (cardId, _) = await BalanceAsync(ct);
        using var http = Http();
        using var issued = await http.PostAsync(new Uri(bank, $"refills?card={cardId}&amount={amount}&currency={currency}"), null, ct);
        if (!issued.IsSuccessStatusCode) throw new ControlErrorException(ErrorCode.BankRefused, $"the bank refused the refill: {await issued.Content.ReadAsStringAsync(ct)}");
        var refill = await issued.Content.ReadAsByteArrayAsync(ct);
        var reply = await control.RequestAsync<WalletRefillAckReply>(new WalletRefillRequest(refill), ct);
        return await PostAsync(http, new Uri(bank, "refill-acks"), reply.Ack, ct);
    }

    /// <summary>Cancels a payment: the card signs, the market confirms, the card re-credits. Returns the new balance.</summary>
    public async Task<long> CancelAsync(string paymentId, CancellationToken ct)
    {
        var reply = await control.RequestAsync<WalletCancellationReply>(new WalletCancelRequest(paymentId), ct);
        var url = reply.MarketUrl;
        if (string.IsNullOrEmpty(url)) throw new ControlErrorException(ErrorCode.NoMarketUrl, "the market of this payment gave no address for cancellations");
        using var http = Http();
        using var content = new ByteArrayContent(reply.Cancellation);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/cose");
        using var response = await http.PostAsync(new Uri(new Uri(url), "cancellations"), content, ct);
        if (!response.IsSuccessStatusCode) throw new ControlErrorException(ErrorCode.MarketRefused, $"the market refused the cancellation: {(await response.Content.ReadAsStringAsync(ct)).Trim()}");
        var confirmation = await response.Content.ReadAsByteArrayAsync(ct);
        var credited = await control.RequestAsync<WalletCreditedReply>(new WalletConfirmRequest(confirmation), ct);
        return credited.Balance;
    }

    public async Task<(long Sent, long Pending)> MailAsync(CancellationToken ct)
    {
        var reply = await control.RequestAsync<WalletMailedReply>(new WalletMailRequest(), ct);
        return (reply.Sent, reply.Pending);
    }

    private static async Task<string> PostAsync(HttpClient http, Uri uri, byte[] cose, CancellationToken ct)
    {
        using var content = new ByteArrayContent(cose);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/cose");
        using var response = await http.PostAsync(uri, content, ct);
        var text = (await response.Content.ReadAsStringAsync(ct)).Trim();
        if (!response.IsSuccessStatusCode) throw new ControlErrorException(ErrorCode.Refused, $"{uri.Host} refused: {text}");
        return text;
    }
}
