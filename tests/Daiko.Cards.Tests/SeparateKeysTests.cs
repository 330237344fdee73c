using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Daiko.Cards.Purse;
using Daiko.Cards.Tokens;
using Daiko.Money;
using Daiko.TestSupport;
using Daiko.Tls;
using Net.Pkcs11Interop.Common;

namespace Daiko.Cards.Tests;

/// <summary>The home card's two keys on a real SoftHSM2 token: the TLS key signs only CertificateVerify content, the purse key only money.</summary>
public sealed class SeparateKeysTests : IDisposable
{
    private const string Pin1 = "1111";
    private const string Pin2 = "2222";

    private readonly TempDirectory _dir = new("daiko-keys");

    private HomeCardOptions Options => new(_dir.Path);

    public void Dispose() => _dir.Dispose();

    private HomeCard ReadyCard() => ReadyCards.Create(Options);

    private static byte[] Sign(HomeCard card, byte[] content) => ReadyCards.Sign(card, content);

    [Fact]
    public void TlsKey_SignsClientCertificateVerifyContent_AndRefusesAnythingElse()
    {
        using var card = ReadyCard();
        using var tlsKey = card.PublicEcKey();
        var content = HomeCardTests.CertificateVerifyContent();
        Assert.True(tlsKey.VerifyData(content, Sign(card, content), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
        Assert.NotEmpty(Sign(card, HomeCardTests.CertificateVerifyContent(48)));

        var server = content.ToArray();
        "TLS 1.3, server"u8.CopyTo(server.AsSpan(64));
        var notSpaces = content.ToArray();
        notSpaces[5] = 0x21;
        var noSeparator = content.ToArray();
        noSeparator[64 + 33] = 0x01;
        var money = PaymentOf("card", 100).Payload();
        byte[][] refused = [RandomNumberGenerator.GetBytes(130), server, notSpaces, noSeparator, content[..^1], [.. content, 0], money, SigStructure(money)];
        foreach (var bytes in refused)
        {
            Assert.Throws<CryptographicException>(() => Sign(card, bytes));
        }
    }

    private static byte[] Message(byte type, params byte[] body) => [type, 0, (byte)(body.Length >> 8), (byte)body.Length, .. body];

    [Fact]
    public void TlsKey_SignsAWholeTls12ClientHandshake_AndRefusesPiecesOfOne()
    {
        using var card = ReadyCard();
        using var tlsKey = card.PublicEcKey();
        var hello = Message(1, 3, 3, 1, 2, 3);
        var serverHello12 = Message(2, 3, 3, 9, 9);
        var serverHello13Version = Message(2, 3, 4, 9, 9);
        var certificate = Message(11, 0, 0, 0);
        var done = Message(14);
        var keyExchange = Message(16, 32, 7, 7);
        byte[] transcript = [.. hello, .. serverHello12, .. certificate, .. done, .. keyExchange];
        Assert.True(tlsKey.VerifyData(transcript, Sign(card, transcript), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));

        byte[][] refused =
        [
            [.. serverHello12, .. certificate, .. done, .. keyExchange],           // no ClientHello first
            [.. hello, .. serverHello13Version, .. certificate, .. done, .. keyExchange], // not a TLS 1.2 ServerHello
            [.. hello, .. serverHello12, .. certificate, .. keyExchange],          // no ServerHelloDone
            [.. hello, .. serverHello12, .. certificate, .. done],                 // not ending in ClientKeyExchange
            transcript[..^1],                                                      // a cut message
            [.. transcript, 0],                                                    // trailing bytes
        ];
        foreach (var bytes in refused)
        {
            Assert.Throws<CryptographicException>(() => Sign(card, bytes));
        }
    }

    [Fact]
    public void MoneyMessages_VerifyUnderThePurseKey_NamedByTheirKid_AndNotUnderTheTlsKey()
    {
        using var card = ReadyCard();
        var cose = PaymentOf(card.CardId, 250).Sign(card.OpenMoneySigner());

        using var purse = card.PursePublicKey();
        Assert.Equal(250, MoneyCodec.Verify<Payment>(cose, purse).Amount);
        Assert.Equal(card.PurseKeyInfo, MoneyMessage.KeyIdOf(cose));
        using var named = MoneyMessage.SignerKeyOf(cose)!;
        Assert.Equal(250, MoneyCodec.Verify<Payment>(cose, named).Amount);
        using var tls = card.PublicEcKey();
        Assert.Equal(PurseRefusal.BadSignature, Assert.Throws<PurseException>(() => MoneyCodec.Verify<Payment>(cose, tls)).Refusal);
        Assert.NotEqual(card.PublicKeyInfo, card.PurseKeyInfo);
    }

    [Fact]
    public void PurseKey_RefusesCertificateVerifyContent_AndUnknownKinds()
    {
        using var card = ReadyCard();
        var signer = card.OpenMoneySigner();
        Assert.Throws<CryptographicException>(() => signer.SignStructure(HomeCardTests.CertificateVerifyContent()));
        Assert.Throws<CryptographicException>(() => signer.SignStructure(SigStructure(PayloadOfKind("anything"))));
        Assert.NotEmpty(signer.SignStructure(SigStructure(PayloadOfKind(MoneyKinds.RefillAck))));
        Assert.NotEmpty(new RefillAck("card", "r1", 1, "JPY", DateTimeOffset.UtcNow).Sign(signer));
    }

    [Fact]
    public void AnOldCardWithoutAPurseKey_GetsOneAtItsNextUnlock()
    {
        using (var card = HomeCard.Initialize(Options, HomeCardKeyType.P256, Pin1, Pin2, "admin-code-123"))
        {
            // Make it a card from before the purse key: no purse key in the token, none in card.json.
            using var session = card.Token.OpenSession(pin1Token: false, readWrite: true);
            session.Login(CKU.CKU_USER, Pin2);
            var f = card.Token.Module.Factories.ObjectAttributeFactory;
            foreach (var o in session.FindAllObjects([f.Create(CKA.CKA_ID, KeyTemplates.PurseKeyId)])) session.DestroyObject(o);
            session.Logout();
        }
        var configPath = Path.Combine(_dir.Path, "card", "card.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config.Remove("PurseKeyInfo");
        File.WriteAllText(configPath, config.ToJsonString());

        using var old = HomeCard.Open(Options);
        Assert.Null(old.PurseKeyInfo);
        Assert.Throws<CardNotReadyException>(() => old.OpenMoneySigner());
        Assert.True(old.EnterPin1(Pin1).Accepted);
        Assert.True(old.EnterPin2(Pin2).Accepted);

        Assert.NotNull(old.PurseKeyInfo);
        var cose = PaymentOf(old.CardId, 5).Sign(old.OpenMoneySigner());
        using var purse = old.PursePublicKey();
        Assert.Equal(5, MoneyCodec.Verify<Payment>(cose, purse).Amount);
        var inspected = old.InspectPrivateKey(Pin2, purseKey: true);
        Assert.True(inspected.Sensitive);
        Assert.False(inspected.Extractable);
        Assert.False(inspected.ValueReadable);
        Assert.Contains("PurseKeyInfo", File.ReadAllText(configPath), StringComparison.Ordinal);
    }

    private static Payment PaymentOf(string card, long amount) =>
        new(card, "p1", "request-hash", "market.test", "order", amount, "JPY", DateTimeOffset.UtcNow);

    /// <summary>A canonical payload {"kind": kind, "amount": 1} (any kind, as a forger would write it).</summary>
    private static byte[] PayloadOfKind(string kind)
    {
        var w = new System.Formats.Cbor.CborWriter(System.Formats.Cbor.CborConformanceMode.Canonical);
        w.WriteStartMap(2);
        w.WriteTextString("kind");
        w.WriteTextString(kind);
        w.WriteTextString("amount");
        w.WriteInt64(1);
        w.WriteEndMap();
        return w.Encode();
    }

    private static byte[] SigStructure(byte[] payload)
    {
        var w = new System.Formats.Cbor.CborWriter();
        w.WriteStartArray(4);
        w.WriteTextString("Signature1");
        w.WriteByteString([0xA1, 0x01, 0x26]);
        w.WriteByteString([]);
        w.WriteByteString(payload);
        w.WriteEndArray();
        return w.Encode();
    }
}
