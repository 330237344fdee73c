using Daiko.Home.Trust;
using Daiko.TestSupport;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>The running home server's market validator follows <c>home trust add</c> within a second, without a restart.</summary>
public sealed class MarketTrustTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-market-trust");

    public void Dispose() => _dir.Dispose();

    private sealed class Clock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UtcNow;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public async Task ARootAddedWhileServing_IsUsedForTheNextChain()
    {
        var pki = TestPki.Create(Path.Combine(_dir.Path, "pki"));
        var home = Path.Combine(_dir.Path, "home");
        Directory.CreateDirectory(home);
        var clock = new Clock();
        var live = MarketTrust.Live(home, clock);
        IReadOnlyList<byte[]> chain = [pki.Server.Certificate.RawData];

        var before = await live.ValidateAsync("localhost", chain, default);
        MarketTrust.Add(home, pki.RootPath);
        var withinTheSecond = await live.ValidateAsync("localhost", chain, default);
        clock.Now += TimeSpan.FromSeconds(1);
        var after = await live.ValidateAsync("localhost", chain, default);

        Assert.False(before.Trusted);
        Assert.Equal(CertificateProblem.UntrustedRoot, before.Problem);
        Assert.False(withinTheSecond.Trusted); // the directory is looked at once a second, not per handshake
        Assert.True(after.Trusted);
    }

    [Fact]
    public async Task ARootRemovedWhileServing_DropsTheRememberedVerdicts()
    {
        var pki = TestPki.Create(Path.Combine(_dir.Path, "pki"));
        var home = Path.Combine(_dir.Path, "home");
        Directory.CreateDirectory(home);
        MarketTrust.Add(home, pki.RootPath);
        var clock = new Clock();
        var live = MarketTrust.Live(home, clock);
        IReadOnlyList<byte[]> chain = [pki.Server.Certificate.RawData];
        Assert.True((await live.ValidateAsync("localhost", chain, default)).Trusted);

        foreach (var file in Directory.GetFiles(Path.Combine(home, "trust"))) File.Delete(file);
        clock.Now += TimeSpan.FromSeconds(1);

        Assert.False((await live.ValidateAsync("localhost", chain, default)).Trusted);
    }
}
