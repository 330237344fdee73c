using System.Net;
using Daiko.Home.Policy;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Policy;

/// <summary>The market name lookups the home server keeps for a few seconds (a counting resolver stands in for DNS).</summary>
public sealed class HostLookupTests
{
    private readonly ManualClock _clock = new(new DateTimeOffset(2026, 12, 3, 6, 0, 0, TimeSpan.Zero));
    private readonly Dictionary<string, IPAddress[]> _zone = new(StringComparer.OrdinalIgnoreCase) { ["market.test"] = [IPAddress.Parse("203.0.113.7")] };
    private int _lookups;

    private HostLookup Lookup() => new((host, _) =>
    {
        _lookups++;
        return _zone.TryGetValue(host, out var a) ? Task.FromResult(a) : Task.FromException<IPAddress[]>(new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.HostNotFound));
    }, _clock);

    [Fact]
    public async Task AName_IsLookedUpOnce_WhileItsAnswerIsFresh_AndAgainAfter()
    {
        var lookup = Lookup();
        Assert.Equal("203.0.113.7", (await lookup.AddressesAsync("market.test", default)).Single().ToString());
        _zone["market.test"] = [IPAddress.Parse("198.51.100.9")];
        _clock.Now += HostLookup.Freshness - TimeSpan.FromMilliseconds(1);
        Assert.Equal("203.0.113.7", (await lookup.AddressesAsync("MARKET.test", default)).Single().ToString());
        Assert.Equal(1, _lookups);

        _clock.Now += TimeSpan.FromMilliseconds(1);
        Assert.Equal("198.51.100.9", (await lookup.AddressesAsync("market.test", default)).Single().ToString());
        Assert.Equal(2, _lookups);
    }

    [Fact]
    public async Task AFailedLookup_IsNotKept()
    {
        var lookup = Lookup();
        await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(() => lookup.AddressesAsync("new.test", default));
        _zone["new.test"] = [IPAddress.Parse("192.0.2.1")];
        Assert.Equal("192.0.2.1", (await lookup.AddressesAsync("new.test", default)).Single().ToString());
        Assert.Equal(2, _lookups);
    }

    [Fact]
    public async Task AClockSetBack_DoesNotMakeAnOldAnswerFresh()
    {
        var lookup = Lookup();
        await lookup.AddressesAsync("market.test", default);
        _clock.Now -= TimeSpan.FromHours(1);
        await lookup.AddressesAsync("market.test", default);
        Assert.Equal(2, _lookups);
    }

    [Fact]
    public async Task AnAddressLiteral_IsItsOwnAnswer_WithoutALookup()
    {
        Assert.Equal(IPAddress.IPv6Loopback, (await Lookup().AddressesAsync("[::1]", default)).Single());
        Assert.Equal(0, _lookups);
    }

    [Fact]
    public async Task EachUse_IsJudgedForTheAskingDevice_EvenWhenTheAnswerIsKept()
    {
        var lookup = Lookup();
        _zone["inside.test"] = [IPAddress.Parse("10.1.2.3")];
        var allowed = new MarketReach(DevicePolicy.ParseMarkets("inside.test:443")) { Lookup = lookup };
        Assert.Equal("10.1.2.3", (await allowed.ResolveAsync("inside.test", 443, null, default)).Single().ToString());
        // Another device, any public market only: the kept answer is a private address, refused.
        var refused = await Assert.ThrowsAsync<PolicyRefusedException>(() => (MarketReach.AnyPublic with { Lookup = lookup }).ResolveAsync("inside.test", 443, null, default));
        Assert.Equal(PolicyRule.PrivateAddress, refused.Rule);
        Assert.Equal(1, _lookups);
    }

    [Fact]
    public async Task ForAssist_EveryAddressTheServerNameLeadsTo_MustBeReachable_AndANameThatDoesNotResolveIsLeftToTheHost()
    {
        var lookup = Lookup();
        _zone["inside.test"] = [IPAddress.Parse("192.168.1.10")];
        _zone["split.test"] = [IPAddress.Parse("203.0.113.8"), IPAddress.Parse("10.0.0.8")];
        var anyPublic = MarketReach.AnyPublic with { Lookup = lookup };

        foreach (var name in new[] { "inside.test", "split.test", "127.0.0.1" })
        {
            var refused = await Assert.ThrowsAsync<PolicyRefusedException>(() => anyPublic.CheckOwnAddressesAsync(name, 443, default));
            Assert.Equal(PolicyRule.PrivateAddress, refused.Rule);
        }
        await anyPublic.CheckOwnAddressesAsync("market.test", 443, default);
        // Where it leads cannot be seen from here: the host's addresses alone judge it (ResolveAsync).
        await anyPublic.CheckOwnAddressesAsync("nowhere.test", 443, default);
        // Named by the device's list, a private address is reachable.
        await (new MarketReach(DevicePolicy.ParseMarkets("*,inside.test:443")) { Lookup = lookup }).CheckOwnAddressesAsync("inside.test", 443, default);
    }
}
