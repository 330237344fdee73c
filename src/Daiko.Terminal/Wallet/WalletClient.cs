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
    {
        var session = await new DelegatedConnector(control).ConnectAsync(host, port, mode, cancellationToken: ct);
        OnSession?.Invoke(session);
        return session.Stream;
    }))
    {
        Timeout = TimeSpan.FromSeconds(60),
        // A market's or bank's answer is a money message or a short text: one streaming more is refused, not held.
        MaxResponseContentBufferSize = MaxAnswerBytes,
    };

    /// <summary>The most of a market's or bank's answer the wallet reads: the largest money message the card takes.</summary>
    public const int MaxAnswerBytes = ControlProtocol.MaxMoneyMessageBytes;

    /// <summary>Told of every delegated session the wallet opens to a market or bank (for --stats).</summary>
    public Action<DelegatedSession>? OnSession { get; init; }

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

    /// <summary>How long a bank has to answer a refill request once asked (a server that is not a bank may never answer a POST).</summary>
    public TimeSpan BankAnswerTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Pays order <paramref name="order"/> at <paramref name="market"/>; returns the market's answer.</summary>
    public async Task<(string PaymentId, string MarketAnswer)> PayAsync(Uri market, string order, CancellationToken ct)
    {
        using var http = Http();
        var answer = await AskAsync(http, HttpMethod.Get, new Uri(market, $"orders/{Uri.EscapeDataString(order)}"), null, ct);
        if (!answer.Success) throw new ControlErrorException(ErrorCode.MarketRefused, $"the market at {Where(market)} gave no payment request for order '{order}': it answered {answer}");
        WalletPaymentReply reply;
        try
        {
            reply = await control.RequestAsync<WalletPaymentReply>(new WalletPayRequest(answer.Body), ct);
        }
        catch (ControlErrorException e) when (e.Code is ErrorCode.PurseMalformed or ErrorCode.PurseBadSignature or ErrorCode.BadRequest)
        {
            throw new ControlErrorException(e.Code, $"{e.Message} (the market at {Where(market)} answered {answer})");
        }
        var (payment, paymentId) = (reply.Payment, reply.PaymentId);
        return (paymentId, await PostAsync(http, new Uri(market, "payments"), payment, ct));
    }

    private static string Where(Uri peer) => $"{peer.Host}:{peer.Port}";

    /// <summary>Asks <paramref name="bank"/> for a refill of the card, has the card credit it, and returns the ack to the bank.</summary>
    public async Task<string> RefillAsync(Uri bank, long amount, string currency, CancellationToken ct)
    {
        var (cardId, _) = await BalanceAsync(ct);
        using var http = Http();
        using var answerWithin = CancellationTokenSource.CreateLinkedTokenSource(ct);
        answerWithin.CancelAfter(BankAnswerTimeout);
        PeerAnswer answer;
        try
        {
            answer = await AskAsync(http, HttpMethod.Post, new Uri(bank, $"refills?card={cardId}&amount={amount}&currency={currency}"), null, answerWithin.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new ControlErrorException(ErrorCode.BankRefused, $"{Where(bank)} did not answer the refill request within {BankAnswerTimeout.TotalSeconds:0} s: it does not behave as a Daiko bank (a bank answers POST /refills with a signed refill)");
        }
        if (!answer.Success) throw new ControlErrorException(ErrorCode.BankRefused, $"the bank at {Where(bank)} refused the refill: it answered {answer}");
        WalletRefillAckReply reply;
        try
        {
            reply = await control.RequestAsync<WalletRefillAckReply>(new WalletRefillRequest(answer.Body), ct);
        }
        catch (ControlErrorException e) when (e.Code is ErrorCode.PurseMalformed or ErrorCode.PurseBadSignature or ErrorCode.BadRequest)
        {
            throw new ControlErrorException(e.Code, $"{e.Message} (the bank at {Where(bank)} answered {answer})");
        }
        return await PostAsync(http, new Uri(bank, "refill-acks"), reply.Ack, ct);
    }

    /// <summary>Cancels a payment: the card signs, the market confirms, the card re-credits. Returns the new balance.</summary>
    public async Task<long> CancelAsync(string paymentId, CancellationToken ct)
    {
        var reply = await control.RequestAsync<WalletCancellationReply>(new WalletCancelRequest(paymentId), ct);
        var url = reply.MarketUrl;
        if (string.IsNullOrEmpty(url)) throw new ControlErrorException(ErrorCode.NoMarketUrl, "the market of this payment gave no address for cancellations");
        using var http = Http();
        var answer = await AskAsync(http, HttpMethod.Post, new Uri(new Uri(url), "cancellations"), Cose(reply.Cancellation), ct);
        if (!answer.Success) throw new ControlErrorException(ErrorCode.MarketRefused, $"the market refused the cancellation: it answered {answer}");
        var confirmation = answer.Body;
        var credited = await control.RequestAsync<WalletCreditedReply>(new WalletConfirmRequest(confirmation), ct);
        return credited.Balance;
    }

    public async Task<(long Sent, long Pending)> MailAsync(CancellationToken ct)
    {
        var reply = await control.RequestAsync<WalletMailedReply>(new WalletMailRequest(), ct);
        return (reply.Sent, reply.Pending);
    }

    private static ByteArrayContent Cose(byte[] message)
    {
        var content = new ByteArrayContent(message);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/cose");
        return content;
    }

    /// <summary>One request to a market or bank, its answer read up to <see cref="MaxAnswerBytes"/> (more is <see cref="InvalidDataException"/>).</summary>
    private static async Task<PeerAnswer> AskAsync(HttpClient http, HttpMethod method, Uri uri, HttpContent? content, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, uri) { Content = content };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        return await PeerAnswer.ReadAsync(response, MaxAnswerBytes, ct);
    }

    private static async Task<string> PostAsync(HttpClient http, Uri uri, byte[] cose, CancellationToken ct)
    {
        var answer = await AskAsync(http, HttpMethod.Post, uri, Cose(cose), ct);
        if (!answer.Success) throw new ControlErrorException(ErrorCode.Refused, $"{Where(uri)} refused: it answered {answer}");
        return PeerAnswer.Printable(System.Text.Encoding.UTF8.GetString(answer.Body).Trim());
    }
}

/// <summary>What a market or bank answered, as one short phrase for an error: status, type and the start of the body.</summary>
internal sealed record PeerAnswer(int Status, string Reason, string? ContentType, byte[] Body)
{
    public bool Success => Status is >= 200 and <= 299;

    /// <summary>The answer, its body read to at most <paramref name="limit"/> bytes: a longer one is refused, not held.</summary>
    public static async Task<PeerAnswer> ReadAsync(HttpResponseMessage response, int limit, CancellationToken ct)
    {
        var head = $"{(int)response.StatusCode} {response.ReasonPhrase}".Trim();
        if (response.Content.Headers.ContentLength > limit) throw TooLong(head, limit);
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int n;
        while ((n = await body.ReadAsync(chunk, ct)) > 0)
        {
            if (buffer.Length + n > limit) throw TooLong(head, limit);
            buffer.Write(chunk, 0, n);
        }
        return new((int)response.StatusCode, response.ReasonPhrase ?? "", response.Content.Headers.ContentType?.MediaType, buffer.ToArray());
    }

    private static InvalidDataException TooLong(string head, int limit) =>
        new($"it answered {head} with more than {limit / 1024} KiB, more than any money message; the rest was not read");

    /// <summary>
    /// A market's text as it may reach the user's screen: every control or invisible formatting character (an escape
    /// sequence that would rewrite the terminal's screen or clipboard, a direction override) shown as U+FFFD.
    /// </summary>
    public static string Printable(string text) =>
        string.Create(text.Length, text, static (span, t) =>
        {
            for (var i = 0; i < t.Length; i++)
            {
                var c = t[i];
                var hidden = (char.IsControl(c) && c is not '\n' and not '\t') || char.GetUnicodeCategory(c) is System.Globalization.UnicodeCategory.Format
                    or System.Globalization.UnicodeCategory.LineSeparator or System.Globalization.UnicodeCategory.ParagraphSeparator;
                span[i] = hidden ? '\uFFFD' : c;
            }
        });

    /// <summary>e.g. <c>404 Not Found (text/plain): "no such order"</c>; a binary body is counted, never printed.</summary>
    public override string ToString()
    {
        var head = $"{Status} {Reason}".Trim() + (ContentType is null ? "" : $" ({ContentType})");
        if (Body.Length == 0) return head + " with an empty body";
        var text = System.Text.Encoding.UTF8.GetString(Body, 0, Math.Min(Body.Length, 400));
        if (text.Any(ch => char.IsControl(ch) && ch is not '\n' and not '\r' and not '\t')) return $"{head}: {Body.Length} bytes that are not text";
        var line = Printable(string.Join(' ', text.Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)));
        return $"{head}: \"{(line.Length > 120 ? line[..120] + "…" : line)}\"";
    }
}
