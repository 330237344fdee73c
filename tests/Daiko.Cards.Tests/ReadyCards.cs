using Daiko.Tls;

namespace Daiko.Cards.Tests;

/// <summary>A new P-256 home card made crypto-ready (PIN1 then PIN2), and a CertificateVerify signature through it.</summary>
internal static class ReadyCards
{
    public const string Pin1 = "1111";
    public const string Pin2 = "2222";

    /// <param name="leased">Runs in each signature once it holds its signing session.</param>
    public static HomeCard Create(HomeCardOptions options, Action? leased = null)
    {
        var card = HomeCard.Initialize(options, HomeCardKeyType.P256, Pin1, Pin2, "admin-code-123");
        card.Token.SignatureLeased = leased;
        Assert.True(card.EnterPin1(Pin1).Accepted);
        Assert.True(card.EnterPin2(Pin2).Accepted);
        return card;
    }

    public static byte[] Sign(HomeCard card, byte[] content) =>
        card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, content, default).AsTask().GetAwaiter().GetResult();
}
