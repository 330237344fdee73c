using System.Security.Cryptography;
using Daiko.Money;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Daiko.EndToEnd.Tests;

/// <summary>A market or bank of the test: its name (the id in its messages), its signing key (public half in a PEM file) and its routes.</summary>
internal sealed class MoneyPeer
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public MoneyPeer(string name, string directory)
    {
        Name = name;
        KeyPath = Path.Combine(directory, name + ".pem");
        File.WriteAllText(KeyPath, _key.ExportSubjectPublicKeyInfoPem());
    }

    public string Name { get; }

    public string KeyPath { get; }

    public long Amount { get; set; } = 900;

    /// <summary>What the market answers a payment it takes; null: "paid AMOUNT CURRENCY; payment ID".</summary>
    public Func<Payment, IResult>? PaymentAnswer { get; set; }

    /// <summary>The payment ids this market was handed, in order.</summary>
    public List<string> Received { get; } = new();

    /// <summary>GET /orders/{order}: a request whose id is the order; POST /payments: accepts a payment naming this market.</summary>
    public void MapMarket(WebApplication app)
    {
        app.MapGet("/orders/{order}", (string order) => Results.Bytes(
            new PaymentRequest(Name, order, order, Amount, "JPY", DateTimeOffset.FromUnixTimeSeconds(4_000_000_000), "").Sign(_key), "application/cose"));
        app.MapPost("/payments", async (HttpContext context) =>
        {
            var payment = MoneyCodec.ReadUnverified<Payment>(await BodyAsync(context));
            if (payment.Market != Name) return Results.BadRequest($"this payment is for {payment.Market}, not {Name}\n");
            lock (Received) Received.Add(payment.PaymentId);
            return PaymentAnswer?.Invoke(payment) ?? Results.Text($"paid {payment.Amount} {payment.Currency}; payment {payment.PaymentId}\n");
        });
    }

    /// <summary>POST /refills: a refill signed with this party's key, naming this party as the bank; POST /refill-acks: settled.</summary>
    public void MapBank(WebApplication app)
    {
        app.MapPost("/refills", (HttpContext context) => Results.Bytes(new Refill(Name, context.Request.Query["card"].ToString(), Guid.NewGuid().ToString("N"),
            long.Parse(context.Request.Query["amount"].ToString(), System.Globalization.CultureInfo.InvariantCulture), "JPY", DateTimeOffset.UtcNow.AddMinutes(10)).Sign(_key), "application/cose"));
        app.MapPost("/refill-acks", () => Results.Text("settled\n"));
    }

    private static async Task<byte[]> BodyAsync(HttpContext context)
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        return body.ToArray();
    }
}
