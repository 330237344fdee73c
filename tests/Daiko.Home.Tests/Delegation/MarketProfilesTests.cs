using Daiko.Home.Delegation;
using Daiko.Home.Storage;
using Daiko.Protocol;
using Daiko.Home.Tests.Storage;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Delegation;

/// <summary>Market profiles and the choice of mode for auto, and the declared payees: one contract, run on SQLite and on a real PostgreSQL server.</summary>
public abstract class MarketProfilesContract(StoreKind kind) : StoreContract(kind, "daiko-mp")
{
    [Theory]
    [InlineData(true, true, DelegationMode.Resume)]
    [InlineData(true, false, DelegationMode.Handoff)]
    [InlineData(false, false, DelegationMode.Relay)]
    public async Task Auto_PicksTheCheapestSupportedMode(bool tls13, bool tickets, DelegationMode expected)
    {
        var profiles = new MarketProfiles(Store().MarketProfiles);
        await profiles.RememberAsync(new MarketProfile("m.test", 443, tls13, tickets, false, 0, DateTimeOffset.UnixEpoch));

        Assert.Equal(expected, MarketProfiles.Choose(await profiles.FindAsync("m.test", 443, "m.test", null)));
    }

    [Fact]
    public async Task OneAddressUnderTwoServerNamesOrAlpns_HasAProfileForEach_AndAPskKeFindingTouchesOnlyItsOwn()
    {
        var shop = new MarketProfile("m.test", 443, true, true, false, 0, DateTimeOffset.UnixEpoch);
        var other = new MarketProfile("m.test", 443, true, false, false, 0, DateTimeOffset.UnixEpoch) { NoTicketsConfirmed = true, ServerName = "other.test" };
        await new MarketProfiles(Store().MarketProfiles).RememberAsync(shop);
        await new MarketProfiles(Store().MarketProfiles).RememberAsync(other);
        await new MarketProfiles(Store().MarketProfiles).RememberPskKeAsync(new MarketProfileKey("m.test", 443, "m.test", ""), true);

        var profiles = new MarketProfiles(Store().MarketProfiles);
        Assert.Equal(shop with { AcceptsPskKe = true }, await profiles.FindAsync("m.test", 443, "m.test", null));
        Assert.Equal(other, await profiles.FindAsync("m.test", 443, "other.test", null));
        Assert.Equal(DelegationMode.Resume, MarketProfiles.Choose(await profiles.FindAsync(new MarketRequest("m.test", 443, null, null))));
        Assert.Equal(DelegationMode.Handoff, MarketProfiles.Choose(await profiles.FindAsync(new MarketRequest("m.test", 443, "other.test", null))));
        Assert.Null(await profiles.FindAsync("m.test", 443, "third.test", null));
        // Under another ALPN (a front end may route by it) the market's own name is not known yet either.
        Assert.Null(await profiles.FindAsync(new MarketRequest("m.test", 443, null, "h2")));
        await profiles.RememberAsync(shop with { IssuesTickets = false, NoTicketsConfirmed = true, Alpn = "h2" });
        Assert.True((await new MarketProfiles(Store().MarketProfiles).FindAsync("m.test", 443, "m.test", "h2")) is { NoTicketsConfirmed: true, Alpn: "h2" });
        Assert.True((await new MarketProfiles(Store().MarketProfiles).FindAsync("m.test", 443, "m.test", null))!.IssuesTickets);
    }

    [Fact]
    public async Task EverNewAlpns_AtOneMarket_KeepOnlyTheProfilesLearnedLast_AndLeaveItsOtherNamesAlone()
    {
        var other = new MarketProfile("m.test", 443, true, true, false, 0, DateTimeOffset.UnixEpoch) { ServerName = "other.test", Alpn = "h2" };
        await new MarketProfiles(Store().MarketProfiles).RememberAsync(other);
        var first = DateTimeOffset.UnixEpoch.AddDays(1);
        var count = SqlMarketProfileStore.MaxAlpnsKept + 3;
        for (var i = 0; i < count; i++)
        {
            await new MarketProfiles(Store().MarketProfiles).RememberAsync(
                new MarketProfile("m.test", 443, true, true, false, 0, first.AddMinutes(i)) { Alpn = $"x-{i}" });
        }

        var profiles = new MarketProfiles(Store().MarketProfiles);
        for (var i = 0; i < count; i++)
        {
            var kept = await profiles.FindAsync("m.test", 443, "m.test", $"x-{i}");
            Assert.True((kept is not null) == (i >= count - SqlMarketProfileStore.MaxAlpnsKept), $"x-{i}: {kept}");
        }
        Assert.Equal(other, await profiles.FindAsync("m.test", 443, "other.test", "h2"));
        // One learned again is the newest, and keeps its place while the oldest goes.
        await profiles.RememberAsync(new MarketProfile("m.test", 443, true, false, false, 0, first.AddHours(1)) { Alpn = "x-3" });
        await profiles.RememberAsync(new MarketProfile("m.test", 443, true, true, false, 0, first.AddHours(2)) { Alpn = "x-new" });
        var after = new MarketProfiles(Store().MarketProfiles);
        Assert.NotNull(await after.FindAsync("m.test", 443, "m.test", "x-3"));
        Assert.NotNull(await after.FindAsync("m.test", 443, "m.test", "x-new"));
        Assert.Null(await after.FindAsync("m.test", 443, "m.test", "x-4"));
        Assert.NotNull(await after.FindAsync("m.test", 443, "m.test", "x-5"));
    }

    [Fact]
    public async Task UnknownMarket_StartsWithHandoff_AndProfilesAreUpdatedAndSurviveRestart()
    {
        Assert.Equal(DelegationMode.Handoff, MarketProfiles.Choose(await new MarketProfiles(Store().MarketProfiles).FindAsync("new.test", 443, "new.test", null)));

        await new MarketProfiles(Store().MarketProfiles).RememberAsync(new MarketProfile("new.test", 443, true, false, false, 0, DateTimeOffset.UnixEpoch));
        await new MarketProfiles(Store().MarketProfiles).RememberAsync(new MarketProfile("new.test", 443, true, true, true, 16384, DateTimeOffset.UnixEpoch.AddDays(1)));
        var found = await new MarketProfiles(Store().MarketProfiles).FindAsync("new.test", 443, "new.test", null);

        Assert.NotNull(found);
        // Everything a handshake learns is replaced; whether the market takes psk_ke only its own check changes (RememberPskKeAsync).
        Assert.True(found.IssuesTickets && !found.AcceptsPskKe);
        Assert.Equal(16384u, found.MaxEarlyData);
        Assert.Equal(DateTimeOffset.UnixEpoch.AddDays(1), found.LearnedAt);
        Assert.Null(await new MarketProfiles(Store().MarketProfiles).FindAsync("new.test", 444, "new.test", null));
    }

    [Fact]
    public async Task APskKeFinding_ChangesThatAlone_AndMakesNoProfileForAMarketNotProfiled()
    {
        var learned = new MarketProfile("psk.test", 443, true, true, false, 16384, DateTimeOffset.UnixEpoch.AddDays(3)) { NoTicketsConfirmed = false };
        await new MarketProfiles(Store().MarketProfiles).RememberAsync(learned);
        var profiles = new MarketProfiles(Store().MarketProfiles);
        Assert.False((await profiles.FindAsync("psk.test", 443, "psk.test", null))!.AcceptsPskKe);

        await profiles.RememberPskKeAsync(new MarketProfileKey("psk.test", 443, "psk.test", ""), true);
        await profiles.RememberPskKeAsync(new MarketProfileKey("unknown.test", 443, "unknown.test", ""), true);

        // Read again at once by the same instance (its cached read is dropped) and by a new one (the store).
        Assert.Equal(learned with { AcceptsPskKe = true }, await profiles.FindAsync("psk.test", 443, "psk.test", null));
        Assert.Equal(learned with { AcceptsPskKe = true }, await new MarketProfiles(Store().MarketProfiles).FindAsync("psk.test", 443, "psk.test", null));
        Assert.Null(await new MarketProfiles(Store().MarketProfiles).FindAsync("unknown.test", 443, "unknown.test", null));
    }

    /// <summary>Reads the store, then waits for the test before answering (a read still on its way).</summary>
    private sealed class SlowReads(IMarketProfileStore inner) : IMarketProfileStore
    {
        public TaskCompletionSource Read { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public async Task<MarketProfile?> FindAsync(MarketProfileKey key, CancellationToken cancellationToken = default)
        {
            var found = await inner.FindAsync(key, cancellationToken);
            Read.TrySetResult();
            await Answer.Task;
            return found;
        }

        public Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default) => inner.RememberAsync(profile, cancellationToken);

        public Task RememberPskKeAsync(MarketProfileKey key, bool accepts, CancellationToken cancellationToken = default) =>
            inner.RememberPskKeAsync(key, accepts, cancellationToken);
    }

    [Fact]
    public async Task AProfileRememberedWhileAReadWasOnItsWay_IsNotOverwrittenByWhatTheReadSaw()
    {
        var t0 = DateTimeOffset.UnixEpoch.AddDays(20);
        var store = Store().MarketProfiles;
        var old = new MarketProfile("m.test", 443, true, false, false, 0, t0);
        await store.RememberAsync(old);
        var slow = new SlowReads(store);
        var profiles = new MarketProfiles(slow, new ManualClock(t0));

        var reading = profiles.FindAsync("m.test", 443, "m.test", null);
        await slow.Read.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var learned = old with { IssuesTickets = true };
        await profiles.RememberAsync(learned);
        slow.Answer.SetResult();
        Assert.Equal(old, await reading);

        Assert.Equal(learned, await profiles.FindAsync("m.test", 443, "m.test", null));
    }

    [Fact]
    public async Task AHandshakeThatSawNothingNew_IsNotWrittenAgainWithinAMinute_ButAChangeIsWrittenAtOnce()
    {
        var t0 = DateTimeOffset.UnixEpoch.AddDays(10);
        var clock = new ManualClock(t0);
        var profiles = new MarketProfiles(Store().MarketProfiles, clock);
        var seen = new MarketProfile("m.test", 443, true, true, false, 0, t0);
        await profiles.RememberAsync(seen);

        // The same profile 30 s later (as every full handshake reports it): the store keeps the first date.
        clock.Now = t0.AddSeconds(30);
        Assert.Equal(seen, await profiles.FindAsync("m.test", 443, "m.test", null));
        await profiles.RememberAsync(seen with { LearnedAt = clock.Now });
        Assert.Equal(t0, (await new MarketProfiles(Store().MarketProfiles).FindAsync("m.test", 443, "m.test", null))!.LearnedAt);

        // Something new (the market stopped issuing tickets) is written at once.
        await profiles.RememberAsync(seen with { IssuesTickets = false, LearnedAt = clock.Now });
        Assert.False((await new MarketProfiles(Store().MarketProfiles).FindAsync("m.test", 443, "m.test", null))!.IssuesTickets);

        // Unchanged again, a minute after the stored date: written again.
        clock.Now = t0.AddSeconds(91);
        Assert.False((await profiles.FindAsync("m.test", 443, "m.test", null))!.IssuesTickets);
        await profiles.RememberAsync(seen with { IssuesTickets = false, LearnedAt = clock.Now });
        Assert.Equal(clock.Now, (await new MarketProfiles(Store().MarketProfiles).FindAsync("m.test", 443, "m.test", null))!.LearnedAt);
    }

    [Fact]
    public async Task Payees_AreAddedWithTheirRole_ReplacedByName_RemovedAndSurviveAnotherStoreInstance()
    {
        var at = DateTimeOffset.UnixEpoch.AddDays(1);
        await new SqlPayeeStore(Store()).AddAsync(new Payee("shop.test", PayeeRole.Market, "PEM-1", at));
        await new SqlPayeeStore(Store()).AddAsync(new Payee("bank.test", PayeeRole.Bank, "PEM-2", at));
        await new SqlPayeeStore(Store()).AddAsync(new Payee("shop.test", PayeeRole.Bank, "PEM-3", at.AddDays(1)));

        var listed = await new SqlPayeeStore(Store()).ListAsync();

        Assert.Equal([new Payee("bank.test", PayeeRole.Bank, "PEM-2", at), new Payee("shop.test", PayeeRole.Bank, "PEM-3", at.AddDays(1))], listed);
        Assert.True(await new SqlPayeeStore(Store()).RemoveAsync("shop.test"));
        Assert.False(await new SqlPayeeStore(Store()).RemoveAsync("shop.test"));
        Assert.Equal(["bank.test"], (await new SqlPayeeStore(Store()).ListAsync()).Select(p => p.Name));
    }
}

public sealed class SqliteMarketProfilesTests() : MarketProfilesContract(StoreKind.Sqlite)
{
    // The bound is the memory of MarketProfiles itself, whatever the store behind it: tried on SQLite alone (on PostgreSQL
    // its 10,500 lookups took over a minute of the suite and judged nothing more).
    [Fact]
    public async Task EverNewHosts_DoNotGrowWhatIsRememberedInMemory_PastItsBound()
    {
        var clock = new SteppedTime();
        var profiles = new MarketProfiles(Store().MarketProfiles, clock);
        for (var i = 0; i < MarketProfiles.MaxRemembered + 500; i++)
        {
            await profiles.FindAsync($"host-{i}.test", 443, $"host-{i}.test", null);
            if (i % 1000 == 999) clock.Now += MarketProfiles.Freshness;
        }

        Assert.InRange(profiles.Remembered, 1, MarketProfiles.MaxRemembered);
        // A market remembered since is still answered from memory.
        await profiles.RememberAsync(new MarketProfile("kept.test", 443, true, true, false, 0, clock.Now));
        Assert.True((await profiles.FindAsync("kept.test", 443, "kept.test", null))?.IssuesTickets);
    }

    private sealed class SteppedTime : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 12, 5, 9, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }
}

[Collection("home card")]
public sealed class PostgresMarketProfilesTests() : MarketProfilesContract(StoreKind.Postgres)
{
}
