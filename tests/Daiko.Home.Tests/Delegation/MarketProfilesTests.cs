using Daiko.Protocol;
using Daiko.Home.Delegation;
using Xunit;

namespace Daiko.Home.Tests.Delegation;

public sealed class MarketProfilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("daiko-mp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(true, true, DelegationMode.Resume)]
    [InlineData(true, false, DelegationMode.Handoff)]
    [InlineData(false, false, DelegationMode.Relay)]
    public void Auto_PicksTheCheapestSupportedMode(bool tls13, bool tickets, DelegationMode expected)
    {
        var profiles = new MarketProfiles(Path.Combine(_dir, "home.db"));
        profiles.Remember(new MarketProfile("m.test", 443, tls13, tickets, false, 0, DateTimeOffset.UnixEpoch));

        Assert.Equal(expected, MarketProfiles.Choose(profiles.Find("m.test", 443)));
    }

    [Fact]
    public void UnknownMarket_StartsWithResume_AndProfilesSurviveRestart()
    {
        var path = Path.Combine(_dir, "home.db");
        Assert.Equal(DelegationMode.Resume, MarketProfiles.Choose(new MarketProfiles(path).Find("new.test", 443)));

        new MarketProfiles(path).Remember(new MarketProfile("new.test", 443, true, true, true, 16384, DateTimeOffset.UnixEpoch));
        var found = new MarketProfiles(path).Find("new.test", 443);

        Assert.NotNull(found);
        Assert.True(found.AcceptsPskKe);
        Assert.Equal(16384u, found.MaxEarlyData);
    }
}
