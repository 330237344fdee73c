using Daiko.Home.Authority;
using Xunit;

namespace Daiko.Home.Tests.Authority;

/// <summary>The assist signer's bounds, on a clock the test moves.</summary>
public sealed class AssistGrantsTests
{
    private sealed class ManualClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 12, 2, 8, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private readonly ManualClock _clock = new();

    [Fact]
    public void AVerifiedGrant_SignsOnceForItsMarket()
    {
        var grants = new AssistGrants(_clock);
        grants.Approve("dev", "m.test:443", "m.test");
        grants.ChainVerdict("dev", "m.test", trusted: true);

        Assert.Equal(("m.test:443", "m.test", (string?)null), grants.Consume("dev"));
        Assert.NotNull(grants.Consume("dev").Refusal);
    }

    [Theory]
    [InlineData("M.TEST")]
    [InlineData("m.test.")]
    public void AVerdictForTheGrantedName_HoweverTheTerminalSpelledIt_MakesTheGrantUsable(string spelled)
    {
        var grants = new AssistGrants(_clock);
        grants.Approve("dev", "m.test:443", "m.test");
        grants.ChainVerdict("dev", spelled, trusted: true);

        Assert.Equal("m.test:443", grants.Consume("dev").Market);
        Assert.True(AssistGrants.Names("m.test", spelled));
        Assert.False(AssistGrants.Names("m.test", "m.test.evil"));
        Assert.False(AssistGrants.Names("m.test", "xm.test"));
        Assert.False(AssistGrants.Names("m.test", null));
    }

    [Theory]
    [InlineData("xn--bcher-kva.example", "BÜCHER.example.", true)]
    [InlineData("xn--bcher-kva.example", "bucher.example", false)]
    [InlineData("127.0.0.1", "::ffff:127.0.0.1", true)]
    [InlineData("127.0.0.1", "127.0.0.2", false)]
    [InlineData("m.test", "m.test..", true)]
    [InlineData("m.test", "m..test", false)]
    public void Names_ComparesTheOneSpelling(string granted, string spelled, bool same) => Assert.Equal(same, AssistGrants.Names(granted, spelled));

    [Fact]
    public void AGrant_IsRefusedAfter30Seconds()
    {
        var grants = new AssistGrants(_clock);
        grants.Approve("dev", "m.test:443", "m.test");
        grants.ChainVerdict("dev", "m.test", trusted: true);
        _clock.Now += TimeSpan.FromSeconds(30.5);

        var (market, _, refusal) = grants.Consume("dev");

        Assert.Null(market);
        Assert.Contains("30 s", refusal, StringComparison.Ordinal);
    }

    [Fact]
    public void AGrant_Within30Seconds_IsAccepted()
    {
        var grants = new AssistGrants(_clock);
        grants.Approve("dev", "m.test:443", "m.test");
        _clock.Now += TimeSpan.FromSeconds(29);
        grants.ChainVerdict("dev", "m.test", trusted: true);

        Assert.Equal("m.test:443", grants.Consume("dev").Market);
    }

    [Fact]
    public void AChainForAnotherMarket_AnUntrustedChain_AnotherDevice_OrARevokedGrant_SignNothing()
    {
        var grants = new AssistGrants(_clock);
        grants.Approve("dev", "m.test:443", "m.test");
        grants.ChainVerdict("dev", "other.test", trusted: true);
        Assert.NotNull(grants.Consume("dev").Refusal);

        grants.Approve("dev", "m.test:443", "m.test");
        grants.ChainVerdict("dev", "m.test", trusted: false);
        grants.ChainVerdict("dev", "m.test", trusted: true);
        Assert.NotNull(grants.Consume("dev").Refusal);

        grants.Approve("dev", "m.test:443", "m.test");
        grants.ChainVerdict("dev", "m.test", trusted: true);
        Assert.NotNull(grants.Consume("other-dev").Refusal);
        grants.Revoke("dev");
        Assert.NotNull(grants.Consume("dev").Refusal);
    }
}
