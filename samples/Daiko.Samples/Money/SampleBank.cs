using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Money;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Daiko.Samples.Money;

/// <summary>
/// A sample bank: issues signed refills for a card, settles them when the card's acknowledgement comes
/// back, and takes deposits of card-signed payments from markets, refusing a second deposit.
/// State is in memory: enough for the demo; a bank keeps it in its own database.
/// </summary>
public sealed class SampleBank
{
    private readonly ConcurrentDictionary<string, bool> _deposits = new();
    private readonly ConcurrentDictionary<string, long> _settled = new();

    public SampleBank(string id)
    {
        Id = id;
    }

    public string Id { get; }

    public ECDsa Key { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public long Settled => _settled.Values.Sum();

    public int Deposits => _deposits.Count;

    public byte[] IssueRefill(string cardId, long amount, string currency) =>
        new Refill(Id, cardId, Guid.NewGuid().ToString("N"), amount, currency, DateTimeOffset.UtcNow.AddMinutes(10)).Sign(Key);

    /// <summary>Settles a refill once the card's signed acknowledgement arrives (the user's account is debited).</summary>
    public bool Settle(byte[] ackCose, ECDsa cardKey)
    {
        var ack = MoneyCodec.Verify<RefillAck>(ackCose, cardKey);
        return _settled.TryAdd(ack.RefillId, ack.Amount);
    }

    /// <summary>Deposits a card-signed payment; a second deposit of the same payment is refused.</summary>
    public bool Deposit(byte[] paymentCose, ECDsa cardKey)
    {
        var payment = MoneyCodec.Verify<Payment>(paymentCose, cardKey);
        return _deposits.TryAdd(payment.PaymentId, true);
    }

    /// <summary>HTTP routes: POST /refills?card=&amp;amount=&amp;currency=, POST /refill-acks (body: COSE).</summary>
    public void Map(WebApplication app)
    {
        app.MapPost("/refills", (HttpContext context) =>
        {
            var card = context.Request.Query["card"].ToString();
            if (!long.TryParse(context.Request.Query["amount"], out var amount) || amount <= 0 || card.Length == 0)
                return Results.BadRequest("card and a positive amount are required\n");
            var currency = context.Request.Query["currency"].ToString() is { Length: 3 } c ? c : "JPY";
            return Results.Bytes(IssueRefill(card, amount, currency), "application/cose");
        });
        app.MapPost("/refill-acks", async (HttpContext context) =>
        {
            var body = await SampleMarketMoney.ReadBodyAsync(context);
            using var cardKey = SampleMarketMoney.PurseKey(context, body);
            if (cardKey is null) return Results.Unauthorized();
            try
            {
                return Settle(body, cardKey) ? Results.Text("settled\n") : Results.Conflict("already settled\n");
            }
            catch (PurseException e)
            {
                return Results.BadRequest(e.Message + "\n");
            }
        });
    }
}

/// <summary>A sample market's e-money routes: orders as signed payment requests, payments, cancellations.</summary>
public sealed class SampleMarketMoney
{
    private readonly ConcurrentDictionary<string, (long Amount, string Currency)> _paid = new();
    private readonly SampleBank _bank;

    public SampleMarketMoney(string id, SampleBank bank)
    {
        Id = id;
        _bank = bank;
    }

    public string Id { get; }

    public ECDsa Key { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public Uri? PublicUrl { get; set; }

    private static readonly ConcurrentDictionary<string, string> PurseKeys = new();

    /// <summary>
    /// The home card's purse key for a money message on this request: named by the message's key id
    /// (kid), and bound on first sight to the client certificate of the TLS session that brought it
    /// (the card's identity); a later message from the same card under another purse key is refused.
    /// </summary>
    public static ECDsa? PurseKey(HttpContext context, byte[] cose)
    {
        var certificate = context.Connection.ClientCertificate;
        var kid = MoneyMessage.KeyIdOf(cose);
        if (certificate is null || kid is null) return null;
        var card = Convert.ToHexString(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));
        var bound = PurseKeys.GetOrAdd(card, Convert.ToHexString(kid));
        return bound == Convert.ToHexString(kid) ? MoneyMessage.SignerKeyOf(cose) : null;
    }

    public static async Task<byte[]> ReadBodyAsync(HttpContext context)
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        return body.ToArray();
    }

    public void Map(WebApplication app)
    {
        app.MapGet("/orders/{order}", (string order) =>
        {
            var amount = 100L * (order.Length + 10);
            return Results.Bytes(new PaymentRequest(Id, order, Guid.NewGuid().ToString("N"), amount, "JPY", DateTimeOffset.UtcNow.AddMinutes(10),
                PublicUrl?.ToString() ?? "").Sign(Key), "application/cose");
        });
        app.MapPost("/payments", async (HttpContext context) =>
        {
            var body = await ReadBodyAsync(context);
            using var cardKey = PurseKey(context, body);
            if (cardKey is null) return Results.Unauthorized();
            try
            {
                var payment = MoneyCodec.Verify<Payment>(body, cardKey);
                if (payment.Market != Id) return Results.BadRequest("this payment is for another market\n");
                if (!_bank.Deposit(body, cardKey)) return Results.Conflict("this payment was already deposited\n");
                _paid[payment.PaymentId] = (payment.Amount, payment.Currency);
                return Results.Text($"paid {payment.Amount} {payment.Currency} for {payment.Order}; payment {payment.PaymentId}\n");
            }
            catch (PurseException e)
            {
                return Results.BadRequest(e.Message + "\n");
            }
        });
        app.MapPost("/cancellations", async (HttpContext context) =>
        {
            var body = await ReadBodyAsync(context);
            using var cardKey = PurseKey(context, body);
            if (cardKey is null) return Results.Unauthorized();
            try
            {
                var cancellation = MoneyCodec.Verify<Cancellation>(body, cardKey);
                if (!_paid.TryRemove(cancellation.PaymentId, out var paid)) return Results.NotFound("no such payment to cancel\n");
                return Results.Bytes(new CancellationConfirmation(Id, cancellation.PaymentId, paid.Amount, paid.Currency, DateTimeOffset.UtcNow).Sign(Key), "application/cose");
            }
            catch (PurseException e)
            {
                return Results.BadRequest(e.Message + "\n");
            }
        });
    }
}
