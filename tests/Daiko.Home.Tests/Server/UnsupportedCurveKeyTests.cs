using System.Security.Cryptography;
using System.Security.Cryptography.Cose;
using Daiko.Home.Devices;
using Daiko.Home.Handlers;
using Daiko.Home.Trust;
using Daiko.Money;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// A public key on a curve this platform lacks (a SubjectPublicKeyInfo naming an unknown curve OID;
/// .NET throws PlatformNotSupportedException, not CryptographicException, for it) is refused as a bad
/// key wherever a peer can send one. Found by the money fuzz target.
/// </summary>
public sealed class UnsupportedCurveKeyTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-curve");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _dir.Dispose();
    }

    /// <summary>A P-256 SubjectPublicKeyInfo whose curve OID 1.2.840.10045.3.1.7 is changed to 1.2.840.10045.19.1.7.</summary>
    private static byte[] UnknownCurveSpki()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var spki = key.ExportSubjectPublicKeyInfo();
        byte[] p256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        var at = spki.AsSpan().IndexOf(p256);
        Assert.True(at > 0);
        spki[at + 5] = 0x13;
        Assert.Throws<PlatformNotSupportedException>(() => ECDsa.Create().ImportSubjectPublicKeyInfo(spki, out _));
        return spki;
    }

    [Fact]
    public void AMoneyMessageWhoseKidNamesAnUnknownCurve_HasNoSignerKey()
    {
        using var signer = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var kid = UnknownCurveSpki();
        var headers = new CoseHeaderMap { [CoseHeaderLabel.KeyIdentifier] = CoseHeaderValue.FromBytes(kid) };
        var cose = CoseSign1Message.SignEmbedded([0xa0], new CoseSigner(signer, HashAlgorithmName.SHA256, headers));

        Assert.Equal(kid, MoneyMessage.KeyIdOf(cose));
        Assert.Null(MoneyMessage.SignerKeyOf(cose));
    }

    [Fact]
    public async Task EnrollingWithADeviceKeyOnAnUnknownCurve_IsABadKey()
    {
        var registry = new DeviceRegistry(Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(_dir.Path, "home.db")));
        using var identity = HomeIdentity.LoadOrCreate(Path.Combine(_dir.Path, "identity"));
        var handler = new EnrollmentHandler(registry, identity, NullLogger.Instance);

        var result = await handler.EnrollAsync(new EnrollRequest("ABCDEFGHJKMN", UnknownCurveSpki()), System.Net.IPAddress.Loopback, CancellationToken.None);

        var error = Assert.IsType<ErrorReply>(result.Reply);
        Assert.Equal(ErrorCode.BadKey, error.Code);
    }
}
