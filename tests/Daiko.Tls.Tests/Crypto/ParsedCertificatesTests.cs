using Daiko.TestSupport;
using Daiko.Tls.Crypto;

namespace Daiko.Tls.Tests.Crypto;

/// <summary>The shared parse of a certificate: exactly the same bytes, or a parse of its own.</summary>
public sealed class ParsedCertificatesTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-parsed");
    private readonly TestPki _pki;

    public ParsedCertificatesTests()
    {
        _pki = TestPki.Create(_dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void TheSameBytes_InAnotherArray_GiveTheSameParse()
    {
        var der = _pki.Server.Certificate.RawData;

        var first = ParsedCertificates.Get(der.ToArray());
        var second = ParsedCertificates.Get(der.ToArray());

        Assert.Same(first, second);
        Assert.Equal(_pki.Server.Certificate.Thumbprint, second.Thumbprint);
    }

    [Fact]
    public void AnotherCertificate_OfTheSameLengthAndName_IsParsedForItself()
    {
        // Same subject, issuer, key type and so (nearly always) the same length: only the bytes tell them apart.
        var now = DateTimeOffset.UtcNow;
        var other = _pki.IssueServer("other", "localhost", notBefore: now.AddDays(-10), notAfter: now.AddDays(-1));
        var good = ParsedCertificates.Get(_pki.Server.Certificate.RawData);

        var parsed = ParsedCertificates.Get(other.Certificate.RawData);

        Assert.NotSame(good, parsed);
        Assert.Equal(other.Certificate.Thumbprint, parsed.Thumbprint);
        Assert.Equal(other.Certificate.NotAfter, parsed.NotAfter);
        Assert.Equal(other.Certificate.PublicKey.EncodedKeyValue.RawData, parsed.PublicKey.EncodedKeyValue.RawData);
    }

    [Fact]
    public void AChangedByte_IsNeverAnsweredWithTheCachedParse()
    {
        var der = _pki.Server.Certificate.RawData;
        var cached = ParsedCertificates.Get(der);
        var changed = der.ToArray();
        changed[^1] ^= 0x01; // inside the signature: still parses, but it is another certificate

        var parsed = ParsedCertificates.Get(changed);

        Assert.NotSame(cached, parsed);
        Assert.Equal(changed, parsed.RawData);
    }

    [Fact]
    public void TheCache_StaysBounded_AndStillAnswersRight()
    {
        var certificates = Enumerable.Range(0, 8).Select(i => _pki.IssueServer($"many{i}", $"m{i}.example").Certificate).ToList();
        for (var round = 0; round < ParsedCertificates.Capacity / certificates.Count + 2; round++)
        {
            foreach (var c in certificates)
            {
                var bytes = c.RawData.ToArray();
                bytes[^1] ^= (byte)round; // a distinct certificate each round
                Assert.Equal(bytes, ParsedCertificates.Get(bytes).RawData);
            }
        }
        // More distinct certificates than it keeps went through it: it keeps exactly its capacity.
        Assert.Equal(ParsedCertificates.Capacity, ParsedCertificates.Count);
        foreach (var c in certificates) Assert.Equal(c.Thumbprint, ParsedCertificates.Get(c.RawData).Thumbprint);
    }
}
