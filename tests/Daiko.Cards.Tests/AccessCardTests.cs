using System.Security.Cryptography;
using Daiko.TestSupport;

using Daiko.Cards.Access;

namespace Daiko.Cards.Tests;

/// <summary>The access card: every transition of seed Fig. 7.</summary>
public sealed class AccessCardTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-access");
    private readonly ManualClock _clock = new();

    public void Dispose() => _dir.Dispose();

    private AccessCard NewCard() => AccessCard.Create(_dir.Path, Pin, AccessCardKdf.ForTests, time: _clock);

    private const string Pin = "432100";

    [Fact]
    public void NewCard_IsLocked_AndItsKeyFileIsEncryptedAndPrivate()
    {
        using var card = NewCard();
        Assert.Equal(AccessCardState.Locked, AccessCard.Open(_dir.Path, _clock).State);
        var file = Path.Combine(_dir.Path, "device-key.enc");
        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        using var ec = ECDsa.Create();
        Assert.ThrowsAny<CryptographicException>(() => ec.ImportPkcs8PrivateKey(File.ReadAllBytes(file), out _));
        Assert.Contains("\"kdf\":\"argon2id\"", File.ReadAllText(file), StringComparison.Ordinal);
    }

    [Fact]
    public void Pin_UnlocksTheDeviceKey_AndDoneLocksIt()
    {
        var card = AccessCard.Open(NewCard() is var _ ? _dir.Path : "", _clock);
        Assert.True(card.Unlock(Pin).Accepted);
        Assert.Equal(AccessCardState.Accessible, card.State);
        byte[] data = [1, 2, 3];
        var signature = card.DeviceKey.SignData(data, HashAlgorithmName.SHA256);
        using var pub = ECDsa.Create();
        pub.ImportSubjectPublicKeyInfo(card.PublicKeyInfo, out _);
        Assert.True(pub.VerifyData(data, signature, HashAlgorithmName.SHA256));
        card.Lock();
        Assert.Throws<CardNotReadyException>(() => card.DeviceKey);
    }

    [Fact]
    public void Idle_TenMinutes_Locks_AndNotASecondBefore()
    {
        using var card = NewCard();
        card.Unlock(Pin);
        _clock.Now += TimeSpan.FromMinutes(10) - TimeSpan.FromSeconds(1);
        Assert.Equal(AccessCardState.Accessible, card.State);
        _clock.Now += TimeSpan.FromSeconds(1);
        Assert.Equal(AccessCardState.Locked, card.State);
    }

    [Fact]
    public void ThreeWrongPins_DestroyTheKey_EvenAcrossReopening()
    {
        NewCard().Dispose();
        // A rewrite of the key file (a PIN change) cut short by a crash left its new copy beside it: that copy goes too.
        File.Copy(Path.Combine(_dir.Path, "device-key.enc"), Path.Combine(_dir.Path, "device-key.enc.new"));
        Assert.Equal(2, AccessCard.Open(_dir.Path, _clock).Unlock("0000").TriesLeft);
        Assert.Equal(1, AccessCard.Open(_dir.Path, _clock).Unlock("0001").TriesLeft);
        var third = AccessCard.Open(_dir.Path, _clock).Unlock("0002");

        Assert.Equal(AccessCardOutcome.Destroyed, third.Outcome);
        Assert.Contains("enroll", third.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(_dir.Path, "device-key.enc*"));
        Assert.Equal(AccessCardState.Destroyed, AccessCard.Open(_dir.Path, _clock).State);
        Assert.Equal(AccessCardOutcome.Destroyed, AccessCard.Open(_dir.Path, _clock).Unlock(Pin).Outcome);
    }

    [Fact]
    public void RacingWrongPins_FromSeparateOpeners_NeverGetAFourthTry()
    {
        NewCard().Dispose();
        var cards = Enumerable.Range(0, 6).Select(_ => AccessCard.Open(_dir.Path, _clock)).ToList();

        var results = new AccessCardUnlock[6];
        Parallel.For(0, 6, i => results[i] = cards[i].Unlock($"99{i:00}"));

        Assert.Single(results, r => r.Message.Contains("2 tries left", StringComparison.Ordinal));
        Assert.Single(results, r => r.Message.Contains("1 try left", StringComparison.Ordinal));
        Assert.Single(results, r => r.Message.StartsWith("wrong access-card PIN: the device key was destroyed", StringComparison.Ordinal));
        Assert.Equal(3, results.Count(r => r.Message.StartsWith("the access card was destroyed", StringComparison.Ordinal)));
        Assert.Equal(AccessCardState.Destroyed, AccessCard.Open(_dir.Path, _clock).State);
        foreach (var card in cards) card.Dispose();
    }

    private sealed class Biometric(string? secret) : IBiometricUnlock
    {
        public string? Release() => secret;
    }

    [Fact]
    public void BiometricHook_UnlocksWithTheSecretItReleases()
    {
        using var card = NewCard();
        Assert.False(card.Unlock(new Biometric(null)).Accepted);
        Assert.True(card.Unlock(new Biometric(Pin)).Accepted);
    }
}

/// <summary>The access card with its device key on a PKCS#11 token (SoftHSM2 standing in for a smart card).</summary>
public sealed class TokenAccessCardTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-access-token");
    private readonly ManualClock _clock = new();
    private readonly AccessCardToken _token;

    public TokenAccessCardTests()
    {
        var token = SoftHsmToken.Create(Path.Combine(_dir.Path, "hsm"), "daiko-access", "4321");
        _token = new AccessCardToken(token.ModulePath, token.Label, token.ConfPath);
    }

    private string Terminal => Path.Combine(_dir.Path, "terminal");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void DeviceKey_IsMadeOnTheToken_SignsThere_AndCannotBeExported()
    {
        AccessCard.CreateOnToken(Terminal, "4321", _token, _clock).Dispose();
        Assert.False(File.Exists(Path.Combine(Terminal, "device-key.p8")));

        using var card = AccessCard.Open(Terminal, _clock);
        Assert.Equal("pkcs11", card.Storage);
        Assert.Equal(AccessCardState.Locked, card.State);
        Assert.Throws<CardNotReadyException>(() => card.DeviceKey);
        Assert.True(card.Unlock("4321").Accepted);

        var data = RandomNumberGenerator.GetBytes(64);
        var signature = card.DeviceKey.SignData(data, HashAlgorithmName.SHA256);
        using var publicKey = ECDsa.Create();
        publicKey.ImportSubjectPublicKeyInfo(card.PublicKeyInfo, out _);
        Assert.True(publicKey.VerifyData(data, signature, HashAlgorithmName.SHA256));
        Assert.Throws<CryptographicException>(() => card.DeviceKey.ExportParameters(includePrivateParameters: true));

        card.Lock();
        Assert.Equal(AccessCardState.Locked, card.State);
        Assert.Throws<CardNotReadyException>(() => card.DeviceKey);
    }

    [Fact]
    public void WrongPins_AreCheckedByTheToken_AndTheThirdMakesTheTerminalEnrollAgain()
    {
        AccessCard.CreateOnToken(Terminal, "4321", _token, _clock).Dispose();

        Assert.Equal(2, AccessCard.Open(Terminal, _clock).Unlock("0000").TriesLeft);
        Assert.Equal(1, AccessCard.Open(Terminal, _clock).Unlock("0001").TriesLeft);
        var third = AccessCard.Open(Terminal, _clock).Unlock("0002");

        Assert.Equal(AccessCardOutcome.Destroyed, third.Outcome);
        Assert.Contains("enroll", third.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(Terminal, "device-key.token.json")));
        Assert.Equal(AccessCardState.Destroyed, AccessCard.Open(Terminal, _clock).State);
        Assert.Equal(AccessCardOutcome.Destroyed, AccessCard.Open(Terminal, _clock).Unlock("4321").Outcome);
    }

    [Fact]
    public void Enrolling_WithAPinTheTokenRefuses_SaysSo()
    {
        var e = Assert.Throws<ArgumentException>(() => AccessCard.CreateOnToken(Terminal, "9999", _token, _clock));
        Assert.Contains("does not open the token", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("9999", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Idle_TenMinutes_LogsOutOfTheToken_AndNotASecondBefore()
    {
        using var card = AccessCard.CreateOnToken(Terminal, "4321", _token, _clock);
        Assert.True(card.Unlock("4321").Accepted);
        _clock.Now += TimeSpan.FromMinutes(10) - TimeSpan.FromSeconds(1);
        Assert.Equal(AccessCardState.Accessible, card.State);
        _clock.Now += TimeSpan.FromSeconds(1);
        Assert.Equal(AccessCardState.Locked, card.State);
        Assert.Throws<CardNotReadyException>(() => card.DeviceKey);
    }
}
