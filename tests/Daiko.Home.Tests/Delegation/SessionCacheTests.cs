using Daiko.Home.Delegation;
using Xunit;

namespace Daiko.Home.Tests.Delegation;

public sealed class SessionCacheTests
{
    private sealed class ManualClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 11, 24, 12, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static readonly MarketKey Phone = new("phone", "market.test", 443, "market.test", "http/1.1");
    private static readonly MarketKey Laptop = new("laptop", "market.test", 443, "market.test", "http/1.1");

    [Fact]
    public void AMarketFloodingTickets_FillsAtMostTheCap_AndTheOldestAreWiped()
    {
        var discarded = new List<string>();
        var cache = new SessionCache<string>(new ManualClock(), discarded.Add);
        for (var i = 0; i < 1000; i++) cache.Add(Phone, $"ticket-{i}", DateTimeOffset.MaxValue, singleUse: true);
        cache.Add(Laptop, "laptop-ticket", DateTimeOffset.MaxValue, singleUse: true);

        Assert.Equal(SessionCache<string>.MaxEntriesPerKey, cache.Count(Phone));
        Assert.Equal(1000 - SessionCache<string>.MaxEntriesPerKey, discarded.Count);
        Assert.Equal("ticket-0", discarded[0]);
        Assert.Equal($"ticket-{1000 - SessionCache<string>.MaxEntriesPerKey}", cache.TryTake(Phone));
        Assert.Equal(1, cache.Count(Laptop));
    }

    [Fact]
    public void ManyDevicesAndMarkets_KeepTheWholeCacheUnderItsBytes_TheOldestGoingFirst_AndTakenEntriesGiveTheirBytesBack()
    {
        var discarded = new List<string>();
        var cache = new SessionCache<string>(new ManualClock(), discarded.Add, sizeOf: s => 1000, maxBytes: 10_000);
        for (var market = 0; market < 20; market++)
        {
            cache.Add(new MarketKey("phone", $"market-{market}.test", 443, "m", "http/1.1"), $"ticket-{market}", DateTimeOffset.MaxValue, singleUse: true);
        }

        Assert.Equal(10_000, cache.Bytes);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => $"ticket-{i}"), discarded);
        Assert.Null(cache.TryTake(new MarketKey("phone", "market-0.test", 443, "m", "http/1.1")));
        Assert.Equal("ticket-19", cache.TryTake(new MarketKey("phone", "market-19.test", 443, "m", "http/1.1")));
        Assert.Equal(9_000, cache.Bytes);
        Assert.Equal(9, cache.PurgeDevice("phone"));
        Assert.Equal(0, cache.Bytes);
    }

    [Fact]
    public void ADeviceFloodingTheCache_PushesOutItsOwnTickets_NotAnotherDevicesHeldBefore()
    {
        var discarded = new List<string>();
        var cache = new SessionCache<string>(new ManualClock(), discarded.Add, sizeOf: s => 1000, maxBytes: 10_000);
        for (var i = 0; i < 3; i++) cache.Add(Phone, $"phone-{i}", DateTimeOffset.MaxValue, singleUse: true);
        // Another device's market sends tickets by the dozen, over many names: more than the whole cache holds.
        for (var i = 0; i < 50; i++)
        {
            cache.Add(new MarketKey("laptop", $"market-{i % 5}.test", 443, "m", "http/1.1"), $"laptop-{i}", DateTimeOffset.MaxValue, singleUse: true);
        }

        Assert.Equal(10_000, cache.Bytes);
        Assert.Equal(3, cache.Count(Phone));
        Assert.DoesNotContain(discarded, d => d.StartsWith("phone-", StringComparison.Ordinal));
        // The laptop's newest stay, its oldest went, and what went was wiped.
        Assert.Equal(Enumerable.Range(0, 43).Select(i => $"laptop-{i}"), discarded);
        Assert.Equal("laptop-45", cache.TryTake(new MarketKey("laptop", "market-0.test", 443, "m", "http/1.1")));
    }

    [Fact]
    public void ADeviceThatOverflowsTheCache_ToATieWithAnother_PushesOutItsOwnOldest()
    {
        var discarded = new List<string>();
        var cache = new SessionCache<string>(new ManualClock(), discarded.Add, sizeOf: s => 1000, maxBytes: 9_000);
        for (var i = 0; i < 5; i++) cache.Add(Phone, $"phone-{i}", DateTimeOffset.MaxValue, singleUse: true);
        for (var i = 0; i < 5; i++) cache.Add(Laptop, $"laptop-{i}", DateTimeOffset.MaxValue, singleUse: true);

        Assert.Equal(["laptop-0"], discarded);
        Assert.Equal(5, cache.Count(Phone));
        Assert.Equal(4, cache.Count(Laptop));
    }

    [Fact]
    public void ACacheOverItsBytes_LetsExpiredEntriesGoFirst_WhoeverHeldThem()
    {
        var clock = new ManualClock();
        var discarded = new List<string>();
        var cache = new SessionCache<string>(clock, discarded.Add, sizeOf: s => 1000, maxBytes: 6_000);
        for (var i = 0; i < 3; i++) cache.Add(Phone, $"phone-{i}", clock.Now.AddMinutes(1), singleUse: true);
        for (var i = 0; i < 3; i++) cache.Add(Laptop, $"laptop-{i}", DateTimeOffset.MaxValue, singleUse: true);
        clock.Now = clock.Now.AddMinutes(2);
        cache.Add(Laptop, "laptop-3", DateTimeOffset.MaxValue, singleUse: true);

        Assert.Equal(["phone-0", "phone-1", "phone-2"], discarded);
        Assert.Equal(4, cache.Count(Laptop));
        Assert.Equal(4_000, cache.Bytes);
    }

    [Fact]
    public void SingleUseEntry_IsHandedOutOnce()
    {
        var cache = new SessionCache<string>(new ManualClock());
        cache.Add(Phone, "ticket-1", DateTimeOffset.MaxValue, singleUse: true);

        Assert.Equal("ticket-1", cache.TryTake(Phone));
        Assert.Null(cache.TryTake(Phone));
    }

    [Fact]
    public void ReusableEntry_IsReusedWhileValid_AndDiscardedWhenExpired()
    {
        var clock = new ManualClock();
        var discarded = new List<string>();
        var cache = new SessionCache<string>(clock, discarded.Add);
        cache.Add(Phone, "secret", clock.Now.AddMinutes(5), singleUse: false);

        Assert.Equal("secret", cache.TryTake(Phone));
        Assert.Equal("secret", cache.TryTake(Phone));
        clock.Now = clock.Now.AddMinutes(5);

        Assert.Null(cache.TryTake(Phone));
        Assert.Equal(["secret"], discarded);
    }

    [Fact]
    public void Entries_AreNeverSharedAcrossDevicesOrAlpn()
    {
        var cache = new SessionCache<string>(new ManualClock());
        cache.Add(Phone, "phone-ticket", DateTimeOffset.MaxValue, singleUse: true);

        Assert.Null(cache.TryTake(Laptop));
        Assert.Null(cache.TryTake(Phone with { Alpn = "h2" }));
        Assert.Equal("phone-ticket", cache.TryTake(Phone));
    }

    [Fact]
    public void WhatAFetchBringsBack_AfterItsDeviceWasPurged_IsWipedNotKept_AndOtherDevicesAreUntouched()
    {
        var discarded = new List<string>();
        var cache = new SessionCache<string>(new ManualClock(), discarded.Add);
        var phoneBefore = cache.PurgesOf("phone");
        var laptopBefore = cache.PurgesOf("laptop");

        cache.PurgeDevice("phone");

        Assert.False(cache.Add(Phone, "late", DateTimeOffset.MaxValue, singleUse: true, phoneBefore));
        Assert.True(cache.Add(Laptop, "laptop", DateTimeOffset.MaxValue, singleUse: true, laptopBefore));
        Assert.Equal(0, cache.Count(Phone));
        Assert.Equal(["late"], discarded);
        // A fetch begun after the purge keeps what it brings.
        Assert.True(cache.Add(Phone, "fresh", DateTimeOffset.MaxValue, singleUse: true, cache.PurgesOf("phone")));
        Assert.Equal("fresh", cache.TryTake(Phone));
    }

    [Fact]
    public void PurgeDevice_RemovesEverythingOfThatDeviceOnly()
    {
        var discarded = new List<string>();
        var cache = new SessionCache<string>(new ManualClock(), discarded.Add);
        cache.Add(Phone, "a", DateTimeOffset.MaxValue, true);
        cache.Add(Phone with { Host = "bank.test" }, "b", DateTimeOffset.MaxValue, true);
        cache.Add(Laptop, "c", DateTimeOffset.MaxValue, true);

        Assert.Equal(2, cache.PurgeDevice("phone"));

        Assert.Equal(0, cache.Count(Phone));
        Assert.Equal(1, cache.Count(Laptop));
        Assert.Equal(["a", "b"], discarded.Order());
    }

    [Fact]
    public void Drop_RemovesOneDevicesOneMarket_WipesIt_GivesItsBytesBack_AndWhatAFetchBegunBeforeBringsIsNotKept()
    {
        var discarded = new List<string>();
        var cache = new SessionCache<string>(new ManualClock(), discarded.Add, sizeOf: _ => 100);
        var bank = Phone with { Host = "bank.test" };
        cache.Add(Phone, "a", DateTimeOffset.MaxValue, true);
        cache.Add(Phone, "b", DateTimeOffset.MaxValue, true);
        cache.Add(bank, "c", DateTimeOffset.MaxValue, true);
        cache.Add(Laptop, "d", DateTimeOffset.MaxValue, true);
        var purges = cache.PurgesOf("phone");

        Assert.Equal(2, cache.Drop(Phone));

        Assert.Equal(["a", "b"], discarded.Order());
        Assert.Equal((0, 1, 1), (cache.Count(Phone), cache.Count(bank), cache.Count(Laptop)));
        Assert.Equal(200, cache.Bytes);
        // A fetch begun before the drop may bring tickets as stale: they are wiped. One begun after keeps its own.
        Assert.False(cache.Add(Phone, "e", DateTimeOffset.MaxValue, true, purges));
        Assert.True(cache.Add(Phone, "f", DateTimeOffset.MaxValue, true, cache.PurgesOf("phone")));
        Assert.Equal(["a", "b", "e"], discarded.Order());
        Assert.Equal(0, cache.Drop(Phone with { Port = 8443 }));
        // The laptop's fetches are untouched by the phone's drops.
        Assert.Equal(0, cache.PurgesOf("laptop"));
    }

    [Fact]
    public void Close_WipesEverything_AndWhatIsAddedAfterwards()
    {
        var discarded = new List<string>();
        var cache = new SessionCache<string>(new ManualClock(), discarded.Add, sizeOf: _ => 100);
        cache.Add(Phone, "a", DateTimeOffset.MaxValue, true);
        cache.Add(Laptop, "b", DateTimeOffset.MaxValue, true);

        cache.Close();

        Assert.Equal(["a", "b"], discarded.Order());
        Assert.Equal((0, 0, 0L), (cache.Count(Phone), cache.Count(Laptop), cache.Bytes));
        // A request still finishing as the parts go away: its ticket is wiped, not kept.
        Assert.False(cache.Add(Phone, "late", DateTimeOffset.MaxValue, true));
        Assert.Equal(["a", "b", "late"], discarded.Order());
        Assert.Null(cache.TryTake(Phone));
    }
}
