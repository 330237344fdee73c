using System.Security.Cryptography;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Cards.Tests;

internal sealed class ManualClock : TimeProvider
{
    public DateTimeOffset Now { get; set; } = new(2026, 11, 24, 12, 0, 0, TimeSpan.Zero);

    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>The home card on a real SoftHSM2 token: every transition of seed Fig. 6.</summary>
public sealed class HomeCardTests : IDisposable
{
    private const string Pin1 = "1111";
    private const string Pin2 = "2222";
    private const string Admin = "admin-code-123";

    private readonly TempDirectory _dir = new("daiko-card");
    private readonly ManualClock _clock = new();

    private HomeCardOptions Options => new(_dir.Path) { Time = _clock };

    public void Dispose() => _dir.Dispose();

    private HomeCard NewCard(HomeCardKeyType type = HomeCardKeyType.P256) => HomeCard.Initialize(Options, type, Pin1, Pin2, Admin);

    /// <summary>What a TLS 1.3 client's CertificateVerify signs (RFC 8446 §4.4.3), over a random transcript hash.</summary>
    internal static byte[] CertificateVerifyContent(int hashLength = 32) =>
        [.. Enumerable.Repeat((byte)0x20, 64), .. "TLS 1.3, client CertificateVerify"u8, 0, .. RandomNumberGenerator.GetBytes(hashLength)];

    private static byte[] MoneyFor(HomeCard card) =>
        new Daiko.Money.Payment(card.CardId, "p1", "request-hash", "market.test", "order", 1, "JPY", DateTimeOffset.UtcNow).Sign(card.OpenMoneySigner());

    [Fact]
    public void NewCard_IsLocked_AndRefusesToSign()
    {
        using var card = NewCard();
        Assert.Equal(HomeCardState.Locked, card.State);
        var e = Assert.Throws<CardNotReadyException>(() => card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, CertificateVerifyContent(), default).AsTask().GetAwaiter().GetResult());
        Assert.Contains("locked", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Pin1ThenPin2_MakesTheCardReady_AndItSignsInTheToken()
    {
        using var card = NewCard();
        Assert.True(card.EnterPin1(Pin1).Accepted);
        Assert.Equal(HomeCardState.RemoteAccessWait, card.State);
        Assert.True(card.EnterPin2(Pin2).Accepted);
        Assert.Equal(HomeCardState.CryptoReady, card.State);

        var content = CertificateVerifyContent();
        var signature = await card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, content, default);

        using var publicKey = card.PublicEcKey();
        Assert.True(publicKey.VerifyData(content, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
    }

    [Fact]
    public void Pin2BeforePin1_IsRefusedAsWrongState_AndCostsNoTry()
    {
        using var card = NewCard();
        var result = card.EnterPin2(Pin2);
        Assert.Equal(PinOutcome.WrongState, result.Outcome);
        Assert.Equal(3, card.GetStatus().Pin2TriesLeft);
    }

    [Fact]
    public void WrongPins_ReportTriesLeft_AndTheThirdDisablesTheCard()
    {
        using var card = NewCard();
        var first = card.EnterPin1("9999");
        Assert.Equal(PinOutcome.Wrong, first.Outcome);
        Assert.Equal(2, first.TriesLeft);
        Assert.Contains("2 tries left", first.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("9999", first.Message, StringComparison.Ordinal);
        Assert.Equal(1, card.EnterPin1("9998").TriesLeft);
        var third = card.EnterPin1("9997");
        Assert.Equal(PinOutcome.Disabled, third.Outcome);
        Assert.Equal(HomeCardState.Disabled, card.State);
        // Even the right PIN is refused now.
        Assert.Equal(PinOutcome.Disabled, card.EnterPin1(Pin1).Outcome);
    }

    [Fact]
    public void CorrectPin_ResetsTheCounter()
    {
        using var card = NewCard();
        card.EnterPin1("9999");
        card.EnterPin1("9998");
        Assert.True(card.EnterPin1(Pin1).Accepted);
        Assert.Equal(3, card.GetStatus().Pin1TriesLeft);
    }

    [Fact]
    public void Counters_AndDisabledState_SurviveReopening()
    {
        using (var card = NewCard())
        {
            card.EnterPin1("9999");
            card.EnterPin1(Pin1);
            card.EnterPin2("0000");
            card.EnterPin2("0001");
        }
        using (var reopened = HomeCard.Open(Options))
        {
            Assert.Equal(HomeCardState.Locked, reopened.State);
            Assert.Equal(1, reopened.GetStatus().Pin2TriesLeft);
            reopened.EnterPin1(Pin1);
            Assert.Equal(PinOutcome.Disabled, reopened.EnterPin2("0002").Outcome);
        }
        using var again = HomeCard.Open(Options);
        Assert.Equal(HomeCardState.Disabled, again.State);
        Assert.Equal(HomeCardState.Disabled, HomeCard.ReadStatus(Options).State);
    }

    [Fact]
    public void Idle_TenMinutes_DropsToRemoteAccessWait_AndUseResetsTheClock()
    {
        using var card = NewCard();
        card.EnterPin1(Pin1);
        card.EnterPin2(Pin2);
        _clock.Now += TimeSpan.FromMinutes(9);
        card.Touch();
        _clock.Now += TimeSpan.FromMinutes(9);
        Assert.Equal(HomeCardState.CryptoReady, card.State);
        _clock.Now += TimeSpan.FromMinutes(1);
        Assert.Equal(HomeCardState.RemoteAccessWait, card.State);
        Assert.Throws<CardNotReadyException>(() => MoneyFor(card));
    }

    [Fact]
    public void Touch_WritesTheIdleDeadlineForOtherProcesses_AtMostOncePerInterval()
    {
        using var card = NewCard();
        card.EnterPin1(Pin1);
        card.EnterPin2(Pin2);
        var written = HomeCard.ReadStatus(Options).IdleExpiresAt;
        Assert.Equal(_clock.Now + TimeSpan.FromMinutes(10), written);

        _clock.Now += TimeSpan.FromMilliseconds(600);
        card.Touch();
        Assert.Equal(written, HomeCard.ReadStatus(Options).IdleExpiresAt);

        _clock.Now += TimeSpan.FromMilliseconds(500);
        card.Touch();
        Assert.Equal(_clock.Now + TimeSpan.FromMinutes(10), HomeCard.ReadStatus(Options).IdleExpiresAt);
        // In this process the clock was reset by every touch, written or not.
        _clock.Now += TimeSpan.FromMinutes(10) - TimeSpan.FromMilliseconds(1);
        Assert.Equal(HomeCardState.CryptoReady, card.State);
    }

    [Fact]
    public void Done_DropsToRemoteAccessWait_AndPin2BringsItBack()
    {
        using var card = NewCard();
        card.EnterPin1(Pin1);
        card.EnterPin2(Pin2);
        card.Done();
        Assert.Equal(HomeCardState.RemoteAccessWait, card.State);
        Assert.True(card.EnterPin2(Pin2).Accepted);
    }

    [Fact]
    public void Unblock_WithTheAdminCode_SetsNewPins()
    {
        using var card = NewCard();
        for (var i = 0; i < 3; i++) card.EnterPin1("000" + i);
        Assert.Equal(HomeCardState.Disabled, card.State);

        Assert.Equal(PinOutcome.Wrong, card.Unblock("not-the-admin", "5555", "6666").Outcome);
        Assert.Equal(HomeCardState.Disabled, card.State);
        Assert.True(card.Unblock(Admin, "5555", "6666").Accepted);

        Assert.Equal(HomeCardState.Locked, card.State);
        Assert.False(card.EnterPin1(Pin1).Accepted);
        Assert.True(card.EnterPin1("5555").Accepted);
        Assert.True(card.EnterPin2("6666").Accepted);
    }

    [Fact]
    public void RacingWrongPins_NeverGetAFourthTry()
    {
        using var card = NewCard();
        var results = new System.Collections.Concurrent.ConcurrentBag<PinResult>();
        Parallel.For(0, 8, i => results.Add(card.EnterPin1("77" + i.ToString("00"))));
        Assert.Equal(3, results.Count(r => r.Outcome is PinOutcome.Wrong || (r.Outcome == PinOutcome.Disabled && r.Message.StartsWith("wrong", StringComparison.Ordinal))));
        Assert.Equal(HomeCardState.Disabled, card.State);
    }

    [Fact]
    public void OwnerOperations_WithAWrongPin2_AreStrikes_AndTheThirdDisablesTheCard()
    {
        using var card = NewCard();
        var first = Assert.Throws<WrongPinException>(() => card.CreateCertificateSigningRequest("CN=Guess", "9990"));
        Assert.Equal(2, first.TriesLeft);
        Assert.Contains("2 tries left", first.Message, StringComparison.Ordinal);
        var second = Assert.Throws<WrongPinException>(() => card.CreateCertificateSigningRequest("CN=Guess", "9991"));
        Assert.Equal(1, second.TriesLeft);
        var third = Assert.Throws<CardDisabledException>(() => card.CreateCertificateSigningRequest("CN=Guess", "9992"));
        Assert.Contains("now disabled", third.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("9992", third.Message, StringComparison.Ordinal);

        Assert.Throws<CardDisabledException>(() => card.CreateCertificateSigningRequest("CN=Guess", Pin2));
        Assert.Equal(HomeCardState.Disabled, HomeCard.ReadStatus(Options).State);
        Assert.Equal(PinOutcome.Disabled, card.EnterPin1(Pin1).Outcome);
    }

    [Fact]
    public void OwnerOperation_WithTheRightPin2_ResetsTheCount()
    {
        using var card = NewCard();
        Assert.Throws<WrongPinException>(() => card.CreateCertificateSigningRequest("CN=Guess", "9990"));
        Assert.NotEmpty(card.CreateCertificateSigningRequest("CN=Alice", Pin2));
        Assert.Equal(HomeCardOptions.MaxTries, card.GetStatus().Pin2TriesLeft);
    }

    [Fact]
    public async Task WrongPin2_IsCaughtEvenWhileTheTokenIsLoggedIn_AndLeavesTheReadySessionSigning()
    {
        using var card = NewCard();
        card.EnterPin1(Pin1);
        card.EnterPin2(Pin2);
        Assert.Equal(HomeCardState.CryptoReady, card.State);

        // PKCS#11 logins are per token: a second session would see "already logged in" and never check the PIN.
        var e = Assert.Throws<WrongPinException>(() => card.CreateCertificateSigningRequest("CN=Guess", "9990"));

        Assert.Equal(2, e.TriesLeft);
        Assert.Equal(HomeCardState.CryptoReady, card.State);
        Assert.NotEmpty(await card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, CertificateVerifyContent(), default));
        Assert.NotEmpty(card.CreateCertificateSigningRequest("CN=Alice", Pin2));
        Assert.Equal(HomeCardState.CryptoReady, card.State);
    }

    [Fact]
    public async Task PinsGivenAgainWhileReady_AreStillCheckedAndCounted_AndNeverInterruptTheReadySession()
    {
        using var card = NewCard();
        Assert.True(card.EnterPin1(Pin1).Accepted);
        Assert.True(card.EnterPin2(Pin2).Accepted);

        // A second terminal unlocking the already-ready card: the right PINs keep it ready and signing.
        Assert.True(card.EnterPin1(Pin1).Accepted);
        Assert.True(card.EnterPin2(Pin2).Accepted);
        Assert.Equal(HomeCardState.CryptoReady, card.State);
        Assert.NotEmpty(await card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, CertificateVerifyContent(), default));

        var wrong1 = card.EnterPin1("9990");
        Assert.Equal(PinOutcome.Wrong, wrong1.Outcome);
        Assert.Equal(2, wrong1.TriesLeft);
        Assert.Equal(HomeCardState.CryptoReady, card.State);

        var wrong2 = card.EnterPin2("9991");
        Assert.Equal(PinOutcome.Wrong, wrong2.Outcome);
        Assert.Equal(2, wrong2.TriesLeft);
        Assert.Equal(HomeCardState.CryptoReady, card.State);
        Assert.NotEmpty(await card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, CertificateVerifyContent(), default));

        // The wrong PIN2s still count: the third disables the card, and then nothing signs.
        Assert.Equal(PinOutcome.Wrong, card.EnterPin2("9992").Outcome);
        Assert.Equal(PinOutcome.Disabled, card.EnterPin2("9993").Outcome);
        Assert.Equal(HomeCardState.Disabled, card.State);
        Assert.Throws<CardDisabledException>(() => card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, CertificateVerifyContent(), default).AsTask().GetAwaiter().GetResult());
    }

    [Fact]
    public async Task AnUnlockAndAWrongPin2_DuringAStreamOfSignatures_InterruptNoSignature()
    {
        using var card = NewCard();
        Assert.True(card.EnterPin1(Pin1).Accepted);
        Assert.True(card.EnterPin2(Pin2).Accepted);
        using var publicKey = card.PublicEcKey();
        var content = CertificateVerifyContent();
        using var stop = new CancellationTokenSource();
        var signed = 0;
        // Device A signs continuously while device B unlocks and then gives a wrong PIN2.
        var stream = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var signature = await card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, content, default);
                Assert.True(publicKey.VerifyData(content, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
                Interlocked.Increment(ref signed);
            }
        });
        while (Volatile.Read(ref signed) < 5) await Task.Delay(5);

        for (var i = 0; i < 3; i++)
        {
            Assert.True(card.EnterPin1(Pin1).Accepted);
            Assert.True(card.EnterPin2(Pin2).Accepted);
        }
        var before = Volatile.Read(ref signed);
        Assert.Equal(PinOutcome.Wrong, card.EnterPin2("9991").Outcome);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (Volatile.Read(ref signed) < before + 5 && DateTime.UtcNow < deadline && !stream.IsCompleted) await Task.Delay(5);
        await stop.CancelAsync();

        await stream; // a signature that failed (CardNotReady) or did not verify fails the test here
        Assert.True(Volatile.Read(ref signed) >= before + 5, $"signatures stopped after the wrong PIN2 ({signed} in all)");
        Assert.Equal(HomeCardState.CryptoReady, card.State);
    }

    [Fact]
    public void PrivateKey_IsSensitive_NotExtractable_AndUnreadable()
    {
        using var card = NewCard();
        var (sensitive, extractable, readable) = card.InspectPrivateKey(Pin2);
        Assert.True(sensitive);
        Assert.False(extractable);
        Assert.False(readable);
        var purse = card.InspectPrivateKey(Pin2, purseKey: true);
        Assert.True(purse.Sensitive);
        Assert.False(purse.Extractable);
        Assert.False(purse.ValueReadable);
    }

    [Fact]
    public async Task PrivateKey_WasGeneratedInTheToken_AsAnotherPkcs11ClientReadsIt()
    {
        using var card = NewCard();
        // A second PKCS#11 client in its own process (OpenSC's pkcs11-tool) reads the key's attributes
        // from the token: CKA_LOCAL (generated on the token), CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE.
        // The slot is chosen by its exact label: pkcs11-tool's --token-label also takes "daiko-home-pin1".
        var slots = await Pkcs11ToolAsync(["-L"]);
        var slot = System.Text.RegularExpressions.Regex.Match(slots, @"Slot \d+ \((0x[0-9a-f]+)\):[^\n]*\n\s+token label\s+:\s+daiko-home\s*\n");
        Assert.True(slot.Success, slots);
        var output = await Pkcs11ToolAsync(["--slot", slot.Groups[1].Value, "--login", "--pin", "env:DAIKO_TEST_PIN", "--list-objects", "--type", "privkey"]);

        var access = output.Split('\n').Where(l => l.TrimStart().StartsWith("Access:", StringComparison.Ordinal))
            .Select(l => l.Split(':', 2)[1].Split(',').Select(f => f.Trim()).ToHashSet()).ToList();
        Assert.True(access.Count >= 1, $"pkcs11-tool listed no private key: {output}");
        foreach (var flags in access)
        {
            Assert.Contains("local", flags);
            Assert.Contains("never extractable", flags);
            Assert.Contains("always sensitive", flags);
            Assert.DoesNotContain("extractable", flags);
        }
    }

    private async Task<string> Pkcs11ToolAsync(string[] arguments)
    {
        var start = new System.Diagnostics.ProcessStartInfo("pkcs11-tool", ["--module", SoftHsmToken.DefaultModule, .. arguments])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["SOFTHSM2_CONF"] = Path.Combine(_dir.Path, "card", "softhsm2.conf");
        start.Environment["DAIKO_TEST_PIN"] = Pin2;
        using var process = System.Diagnostics.Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, output);
        return output;
    }

    /// <summary>The card's certificate request, signed in its token, and a test CA issuing certificates for it (each call a new one).</summary>
    private (TestPki Pki, Func<System.Security.Cryptography.X509Certificates.X509Certificate2> Issue) CertificateAuthorityFor(HomeCard card)
    {
        var csr = card.CreateCertificateSigningRequest("CN=Alice Example, O=Daiko Users", Pin2);
        var request = System.Security.Cryptography.X509Certificates.CertificateRequest.LoadSigningRequest(csr, HashAlgorithmName.SHA256,
            System.Security.Cryptography.X509Certificates.CertificateRequestLoadOptions.Default);
        var pki = TestPki.Create(Path.Combine(_dir.Path, "pki"));
        return (pki, () => pki.IssueForPublicKey(request.PublicKey, request.SubjectName.Name));
    }

    [Fact]
    public void CertificateSigningRequest_IsSignedInTheToken_AndTheIssuedCertificateImports()
    {
        using var card = NewCard();
        var (pki, issue) = CertificateAuthorityFor(card);
        var certificate = issue();

        card.ImportCertificate(certificate.RawData, [pki.Root.RawData], Pin2);

        Assert.Equal(2, card.CertificateChain.Count);
        Assert.True(HomeCard.ReadStatus(Options).HasCertificate);
        Assert.Throws<InvalidOperationException>(() => card.ImportCertificate(pki.User.Der, [], Pin2));
    }

    [Fact]
    public void ARenewedCertificate_ReplacesTheOneBefore_OnTheToken_AndInTheChain()
    {
        using var card = NewCard();
        var (pki, issue) = CertificateAuthorityFor(card);
        var first = issue();
        var renewed = issue();
        Assert.NotEqual(first.SerialNumber, renewed.SerialNumber);

        card.ImportCertificate(first.RawData, [pki.Root.RawData], Pin2);
        card.ImportCertificate(renewed.RawData, [pki.Root.RawData], Pin2);

        using var session = card.Token.OpenSession(pin1Token: false, readWrite: false);
        var f = card.Token.Module.Factories.ObjectAttributeFactory;
        var onToken = session.FindAllObjects([f.Create(Net.Pkcs11Interop.Common.CKA.CKA_CLASS, Net.Pkcs11Interop.Common.CKO.CKO_CERTIFICATE)])
            .Select(o => session.GetAttributeValue(o, [Net.Pkcs11Interop.Common.CKA.CKA_VALUE])[0].GetValueAsByteArray())
            .ToList();
        Assert.Equal([renewed.RawData], onToken);
        Assert.Equal(renewed.RawData, card.CertificateChain[0]);
    }

    [Fact]
    public async Task ImportPkcs12_MovesTheKeyIntoTheToken_WhereItSignsAndCannotBeRead()
    {
        using var card = NewCard();
        var pki = TestPki.Create(Path.Combine(_dir.Path, "pki"));
        var p12 = pki.User.Certificate.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pkcs12, "p12-secret");

        Assert.ThrowsAny<CryptographicException>(() => card.ImportPkcs12(p12, "wrong", Pin2));
        card.ImportPkcs12(p12, "p12-secret", Pin2);

        Assert.Equal(pki.User.Der, card.CertificateChain[0]);
        card.EnterPin1(Pin1);
        card.EnterPin2(Pin2);
        var content = CertificateVerifyContent();
        var signature = await card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, content, default);
        using var publicKey = System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions.GetECDsaPublicKey(pki.User.Certificate)!;
        Assert.True(publicKey.VerifyData(content, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
        var (sensitive, extractable, readable) = card.InspectPrivateKey(Pin2);
        Assert.True(sensitive);
        Assert.False(extractable);
        Assert.False(readable);
    }

    [Fact]
    public async Task Rsa3072Card_SignsRsaPss()
    {
        using var card = NewCard(HomeCardKeyType.Rsa3072);
        card.EnterPin1(Pin1);
        card.EnterPin2(Pin2);
        var content = CertificateVerifyContent();
        var signature = await card.TlsSigner.SignAsync(SignatureScheme.RsaPssRsaeSha256, content, default);
        using var rsa = RSA.Create();
        rsa.ImportSubjectPublicKeyInfo(card.PublicKeyInfo, out _);
        Assert.True(rsa.VerifyData(content, signature, HashAlgorithmName.SHA256, RSASignaturePadding.Pss));
    }
}
