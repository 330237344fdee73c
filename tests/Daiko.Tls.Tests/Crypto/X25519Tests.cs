using Daiko.Tls.Crypto;
using NSec.Cryptography;

namespace Daiko.Tls.Tests.Crypto;

/// <summary>X25519 key shares through libsodium directly: RFC 7748's vectors, the low-order refusal, and agreement with NSec.</summary>
public sealed class X25519Tests
{
    private static readonly byte[] AlicePrivate = Convert.FromHexString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    private static readonly byte[] AlicePublic = Convert.FromHexString("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    private static readonly byte[] BobPrivate = Convert.FromHexString("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    private static readonly byte[] BobPublic = Convert.FromHexString("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    private static readonly byte[] Shared = Convert.FromHexString("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

    [Fact]
    public void Rfc7748_Section6_1_KeysAndSharedSecret()
    {
        using var alice = KeyShare.Create(NamedGroup.X25519, AlicePrivate);
        using var bob = KeyShare.Create(NamedGroup.X25519, BobPrivate);

        Assert.Equal(AlicePublic, alice.PublicKey);
        Assert.Equal(BobPublic, bob.PublicKey);
        Assert.Equal(Shared, alice.Agree(BobPublic));
        Assert.Equal(Shared, bob.Agree(AlicePublic));
    }

    [Theory]
    [InlineData("0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("0100000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")] // order 8
    public void ALowOrderPeerShare_IsIllegalParameter(string hex)
    {
        using var share = KeyShare.Create(NamedGroup.X25519);

        var e = Assert.Throws<TlsException>(() => share.Agree(Convert.FromHexString(hex)));

        Assert.Equal(AlertDescription.IllegalParameter, e.Alert);
    }

    [Fact]
    public void FreshShares_AgreeWithNSec_AndDifferEachTime()
    {
        using var ours = KeyShare.Create(NamedGroup.X25519);
        using var again = KeyShare.Create(NamedGroup.X25519);
        using var theirs = Key.Create(KeyAgreementAlgorithm.X25519, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.None });
        var theirPublic = theirs.PublicKey.Export(KeyBlobFormat.RawPublicKey);

        using var expected = KeyAgreementAlgorithm.X25519.Agree(theirs, NSec.Cryptography.PublicKey.Import(KeyAgreementAlgorithm.X25519, ours.PublicKey, KeyBlobFormat.RawPublicKey),
            new SharedSecretCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport })!;

        Assert.Equal(expected.Export(SharedSecretBlobFormat.RawSharedSecret), ours.Agree(theirPublic));
        Assert.NotEqual(ours.PublicKey, again.PublicKey);
    }
}
