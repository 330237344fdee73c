using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Tls12;

namespace Daiko.Tls.Tests.Tls12;

/// <summary>The TLS 1.2 PRF (RFC 5246 §5) against the P_SHA256 known answer circulated on the IETF TLS list, of any length.</summary>
public sealed class Prf12Tests
{
    private const string Secret = "9bbe436ba940f017b17652849a71db35";
    private const string Seed = "a0ba9f936cda311827a6f796ffd5198c";

    private const string Expected100 =
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66";

    [Theory]
    [InlineData(100)]
    [InlineData(32)]
    [InlineData(12)]
    [InlineData(33)]
    public void PSha256_GivesTheKnownAnswer_CutToTheLengthAsked(int length)
    {
        var suite = CipherSuiteInfo.FindTls12(CipherSuite.EcdheRsaAes128GcmSha256)!;
        var output = MasterSecret12.Prf(suite, Convert.FromHexString(Secret), "test label", Convert.FromHexString(Seed), length);
        Assert.Equal(Expected100[..(2 * length)], Convert.ToHexStringLower(output));
    }
}
