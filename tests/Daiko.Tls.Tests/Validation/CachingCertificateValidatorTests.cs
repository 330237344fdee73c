using Daiko.TestSupport;

namespace Daiko.Tls.Tests.Validation;

/// <summary>The chain-verdict cache in front of X509Chain: what it remembers, and what it must not.</summary>
public sealed class CachingCertificateValidatorTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-verdicts");
    private readonly TestPki _pki;
    private readonly IReadOnlyList<byte[]> _chain;

    public CachingCertificateValidatorTests()
    {
        _pki = TestPki.Create(_dir.Path);
        _chain = [_pki.Server.Certificate.RawData];
    }

    public void Dispose() => _dir.Dispose();

    private sealed class Clock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UtcNow;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    /// <summary>Counts the calls that reach the real validator.</summary>
    private sealed class Counting(IServerCertificateValidator inner) : IServerCertificateValidator
    {
        public int Calls { get; private set; }

        public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
        {
            Calls++;
            return inner.ValidateAsync(serverName, chain, cancellationToken);
        }
    }

    [Fact]
    public async Task AChainThatBuilds_IsRefusedWhenNoNameWasGivenToCheckItAgainst_AndCheckedAgainstAnAddress()
    {
        var validator = new X509ChainValidator([_pki.Root]);

        // Any certificate from a trusted root chains: with no name asked of the server, it proves nothing about it.
        var none = await validator.ValidateAsync(null, _chain, CancellationToken.None);
        Assert.False(none.Trusted);
        Assert.Equal(CertificateProblem.NameMismatch, none.Problem);
        // The test server's certificate names 127.0.0.1 among its addresses, not 127.0.0.2.
        Assert.True((await validator.ValidateAsync("127.0.0.1", _chain, CancellationToken.None)).Trusted);
        Assert.Equal(CertificateProblem.NameMismatch, (await validator.ValidateAsync("127.0.0.2", _chain, CancellationToken.None)).Problem);
    }

    [Fact]
    public async Task SameChainAndName_IsValidatedOnce_WithinTheTimeToLive()
    {
        var clock = new Clock();
        var inner = new Counting(new X509ChainValidator([_pki.Root]));
        var cache = new CachingCertificateValidator(inner, TimeSpan.FromMinutes(5), time: clock);

        Assert.True((await cache.ValidateAsync("localhost", _chain, default)).Trusted);
        Assert.True((await cache.ValidateAsync("LOCALHOST", _chain, default)).Trusted);
        Assert.Equal(1, inner.Calls);
        Assert.Equal(1, cache.Hits);

        clock.Now += TimeSpan.FromMinutes(6);
        Assert.True((await cache.ValidateAsync("localhost", _chain, default)).Trusted);
        Assert.Equal(2, inner.Calls);
    }

    [Fact]
    public async Task AnotherName_OrAnotherChain_IsValidatedAgain_AndAWrongNameStillFails()
    {
        var inner = new Counting(new X509ChainValidator([_pki.Root]));
        var cache = new CachingCertificateValidator(inner);
        Assert.True((await cache.ValidateAsync("localhost", _chain, default)).Trusted);

        var wrongName = await cache.ValidateAsync("market.example", _chain, default);
        Assert.False(wrongName.Trusted);
        Assert.Equal(CertificateProblem.NameMismatch, wrongName.Problem);

        var other = TestPki.Create(Path.Combine(_dir.Path, "other"), rootName: "Another Root");
        var untrusted = await cache.ValidateAsync("localhost", [other.Server.Certificate.RawData], default);
        Assert.False(untrusted.Trusted);
        Assert.Equal(3, inner.Calls);
    }

    [Fact]
    public async Task Failures_AreNeverRemembered()
    {
        var inner = new Counting(new X509ChainValidator([_pki.Root]));
        var cache = new CachingCertificateValidator(inner);

        Assert.False((await cache.ValidateAsync("market.example", _chain, default)).Trusted);
        Assert.False((await cache.ValidateAsync("market.example", _chain, default)).Trusted);

        Assert.Equal(2, inner.Calls);
        Assert.Equal(0, cache.Hits);
    }

    [Fact]
    public async Task AVerdict_NeverOutlivesTheLeafCertificate()
    {
        var notAfter = new DateTimeOffset(_pki.Server.Certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero);
        var clock = new Clock { Now = notAfter - TimeSpan.FromMinutes(1) };
        var inner = new Counting(new X509ChainValidator([_pki.Root], time: clock));
        var cache = new CachingCertificateValidator(inner, TimeSpan.FromDays(1), time: clock);
        Assert.True((await cache.ValidateAsync("localhost", _chain, default)).Trusted);

        clock.Now = notAfter + TimeSpan.FromMinutes(1);
        var expired = await cache.ValidateAsync("localhost", _chain, default);

        Assert.False(expired.Trusted);
        Assert.Equal(CertificateProblem.Expired, expired.Problem);
        Assert.Equal(2, inner.Calls);
    }

    [Fact]
    public async Task TheCache_StaysWithinItsCapacity_ForgettingTheOldestFirst()
    {
        var p1 = TestPki.Create(Path.Combine(_dir.Path, "p1"), rootName: "Root One");
        var p2 = TestPki.Create(Path.Combine(_dir.Path, "p2"), rootName: "Root Two");
        var inner = new Counting(new X509ChainValidator([_pki.Root, p1.Root, p2.Root]));
        var cache = new CachingCertificateValidator(inner, capacity: 2);

        foreach (var chain in new[] { _chain, [p1.Server.Certificate.RawData], [p2.Server.Certificate.RawData] })
        {
            Assert.True((await cache.ValidateAsync("localhost", chain, default)).Trusted);
        }
        Assert.True((await cache.ValidateAsync("localhost", [p2.Server.Certificate.RawData], default)).Trusted);
        Assert.Equal(3, inner.Calls); // the newest is still remembered
        Assert.True((await cache.ValidateAsync("localhost", _chain, default)).Trusted);
        Assert.Equal(4, inner.Calls); // the oldest was forgotten
    }
}
