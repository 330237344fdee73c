using System.Security.Cryptography;
using Daiko.Money;
using Xunit;

namespace Daiko.Home.Tests.Money;

/// <summary>
/// The money messages' wire format: each kind's signed payload equals bytes encoded independently
/// (canonical CBOR, keys by length then bytes), and each reads back as the same record after signing.
/// </summary>
public sealed class MoneyMessageWireTests
{
    private static readonly DateTimeOffset At = DateTimeOffset.FromUnixTimeSeconds(1700000000);

    public static TheoryData<string> Kinds => new(Samples().Keys);

    private static Dictionary<string, (MoneyMessage Message, string Golden)> Samples() => new()
    {
        ["payment-request"] = (new PaymentRequest("market.test", "tea", "q1", 2500, "JPY", At, "https://m.test/"), "a86375726c6f68747470733a2f2f6d2e746573742f646b696e646f7061796d656e742d72657175657374656f726465726374656166616d6f756e741909c4666d61726b65746b6d61726b65742e7465737467657870697265731a6553f1006863757272656e6379634a50596a726571756573745f6964627131"),
        ["payment"] = (new Payment("card-1", "p1", "ab", "market.test", "tea", 2500, "JPY", At), "a96261741a6553f100646361726466636172642d31646b696e64677061796d656e74656f726465726374656166616d6f756e741909c4666d61726b65746b6d61726b65742e746573746863757272656e6379634a50596a7061796d656e745f69646270316c726571756573745f68617368626162"),
        ["refill"] = (new Refill("bank.test", "card-1", "r1", 10000, "JPY", At), "a76462616e6b6962616e6b2e74657374646361726466636172642d31646b696e6466726566696c6c66616d6f756e7419271067657870697265731a6553f1006863757272656e6379634a505969726566696c6c5f6964627231"),
        ["refill-ack"] = (new RefillAck("card-1", "r1", 10000, "JPY", At), "a66261741a6553f100646361726466636172642d31646b696e646a726566696c6c2d61636b66616d6f756e741927106863757272656e6379634a505969726566696c6c5f6964627231"),
        ["cancellation"] = (new Cancellation("card-1", "p1", "market.test", 2500, "JPY", At), "a76261741a6553f100646361726466636172642d31646b696e646c63616e63656c6c6174696f6e66616d6f756e741909c4666d61726b65746b6d61726b65742e746573746863757272656e6379634a50596a7061796d656e745f6964627031"),
        ["cancellation-confirmation"] = (new CancellationConfirmation("market.test", "p1", 2500, "JPY", At), "a66261741a6553f100646b696e64781963616e63656c6c6174696f6e2d636f6e6669726d6174696f6e66616d6f756e741909c4666d61726b65746b6d61726b65742e746573746863757272656e6379634a50596a7061796d656e745f6964627031"),
        ["log-head"] = (new LogHead("card-1", 3, "00ff", At), "a56261741a6553f100646361726466636172642d3164686561646430306666646b696e64686c6f672d6865616467656e747269657303"),
        ["purse-seal"] = (new BalanceSeal("card-1", 7, "00ff", 3, "JPY=7500"), "a6646361726466636172642d3164686561646430306666646b696e646a70757273652d7365616c67636f756e7465720767656e7472696573036862616c616e636573684a50593d37353030"),
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void ThePayload_IsByteForByteTheGoldenEncoding(string kind)
    {
        var (message, golden) = Samples()[kind];
        Assert.Equal(kind, message.Kind);
        Assert.Equal(golden, Convert.ToHexString(message.Payload()).ToLowerInvariant());
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void ASignedMessage_ReadsBackAsTheSameRecord(string kind)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var message = Samples()[kind].Message;
        var cose = message.Sign(key);
        MoneyMessage back = message switch
        {
            PaymentRequest => MoneyCodec.Verify<PaymentRequest>(cose, key),
            Payment => MoneyCodec.Verify<Payment>(cose, key),
            Refill => MoneyCodec.Verify<Refill>(cose, key),
            RefillAck => MoneyCodec.Verify<RefillAck>(cose, key),
            Cancellation => MoneyCodec.Verify<Cancellation>(cose, key),
            CancellationConfirmation => MoneyCodec.Verify<CancellationConfirmation>(cose, key),
            LogHead => MoneyCodec.Verify<LogHead>(cose, key),
            BalanceSeal => MoneyCodec.Verify<BalanceSeal>(cose, key),
            _ => throw new InvalidOperationException(kind),
        };
        Assert.Equal(message, back);
    }

    [Fact]
    public void APaymentRequestWithoutItsUrl_ReadsBackWithAnEmptyUrl()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var withoutUrl = new PaymentRequest("market.test", "tea", "q1", 2500, "JPY", At, "");
        Assert.Equal(withoutUrl, MoneyCodec.Verify<PaymentRequest>(withoutUrl.Sign(key), key));
    }
}
