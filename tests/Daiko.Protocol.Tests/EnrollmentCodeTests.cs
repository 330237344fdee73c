using System.Security.Cryptography;

namespace Daiko.Protocol.Tests;

/// <summary>The enrollment code's pin part: what a man in the middle would have to match before the terminal sends the secret.</summary>
public sealed class EnrollmentCodeTests
{
    private static byte[] KeyHash() => SHA256.HashData(RandomNumberGenerator.GetBytes(91));

    [Fact]
    public void AnEnrollmentUri_GivesItsHomeAndCode_AndAMistypedOne_IsRefusedWithoutShowingTheCode()
    {
        var (id, secret) = EnrollmentCode.NewIdAndSecret();
        var code = EnrollmentCode.Compose(id + secret, KeyHash());

        Assert.Equal(("home.example:7443", code), EnrollmentUri.Parse(EnrollmentUri.Format("home.example:7443", code)));
        // Pasted with the wrong scheme, or without its port: the error goes to a terminal, a log or a CI transcript.
        var wrongScheme = Assert.Throws<FormatException>(() => EnrollmentUri.Parse($"daiko-enrol://home.example:7443/{code}"));
        var noPort = Assert.Throws<FormatException>(() => EnrollmentUri.Parse($"daiko-enroll://home.example/{code}"));
        foreach (var refused in new[] { wrongScheme, noPort })
        {
            Assert.DoesNotContain(secret, refused.Message.Replace("-", ""), StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain(code, refused.Message, StringComparison.OrdinalIgnoreCase);
        }
        Assert.Contains("looks like daiko-enroll://HOST:PORT/CODE", wrongScheme.Message, StringComparison.Ordinal);
        Assert.Contains("names no home HOST:PORT (got 'daiko-enroll://home.example/…')", noPort.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ThePinPart_DependsOnTheWholeKeyHash_NotOnAPrefixOfIt()
    {
        var (id, secret) = EnrollmentCode.NewIdAndSecret();
        var home = KeyHash();
        // A key searched for offline so that its hash begins as the home's: only its last byte differs.
        var forged = (byte[])home.Clone();
        forged[^1] ^= 1;

        Assert.NotEqual(EnrollmentCode.PinPart(id + secret, home), EnrollmentCode.PinPart(id + secret, forged));
    }

    [Fact]
    public void ThePinPart_IsKeyedByTheCodesSecret_SoNoKeyCanBeMadeToMatchEveryCodeOfAHome()
    {
        var home = KeyHash();
        var pins = Enumerable.Range(0, 50).Select(_ => EnrollmentCode.NewIdAndSecret()).Select(c => EnrollmentCode.PinPart(c.PublicId + c.Secret, home)).ToHashSet();

        Assert.Equal(50, pins.Count);
    }

    [Fact]
    public void ACode_SplitsIntoWhatTheTerminalSends_AndThePinPartForThatSecretAndTheHomesKey()
    {
        var (id, secret) = EnrollmentCode.NewIdAndSecret();
        var home = KeyHash();
        var code = EnrollmentCode.Compose(id + secret, home);

        Assert.Matches("^([0-9A-Z]{4}-){6}[0-9A-Z]{4}$", code);
        var (sent, pin) = EnrollmentCode.Split(code.ToLowerInvariant());
        Assert.Equal(id + secret, sent);
        Assert.Equal(EnrollmentCode.PinPart(sent, home), pin);
        Assert.Equal((id, secret), EnrollmentCode.Parse(sent));
    }
}
