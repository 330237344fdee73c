using Daiko.Home.Delegation;
using Daiko.Home.Policy;
using Daiko.Protocol;
using Xunit;

namespace Daiko.Home.Tests.Policy;

/// <summary>Parsing a policy's options, the choice of modes, and the count of tickets a device holds.</summary>
public sealed class DevicePolicyTests
{
    internal sealed class ManualTime : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UnixEpoch.AddYears(56);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public void Default_AllowsAnyPublicMarketAndAllFourModes()
    {
        Assert.Equal("*", DevicePolicy.Default.MarketsText);
        Assert.Equal("resume,handoff,relay,assist", DevicePolicy.Default.ModesText);
        Assert.Null(DevicePolicy.Default.SpendLimitPerDay);
        Assert.Equal(4, DevicePolicy.Default.MaxTickets);
        Assert.Equal(TimeSpan.FromDays(7), DevicePolicy.Default.TicketLifetimeOrLongest);
        Assert.True(DevicePolicy.Default.AllowsAppliance("heater"));
    }

    [Theory]
    [InlineData("90s", 90)]
    [InlineData("90", 90)]
    [InlineData("10m", 600)]
    [InlineData("2h", 7200)]
    [InlineData("7d", 604800)]
    public void TicketLifetimes_Parse(string text, int seconds) => Assert.Equal(TimeSpan.FromSeconds(seconds), DevicePolicy.ParseTicketLifetime(text));

    [Theory]
    [InlineData("8d")]
    [InlineData("0s")]
    [InlineData("-5m")]
    [InlineData("1w")]
    [InlineData("soon")]
    public void TicketLifetimes_OverSevenDaysOrMalformed_AreRefused(string text) => Assert.Throws<FormatException>(() => DevicePolicy.ParseTicketLifetime(text));

    [Fact]
    public void Modes_Parse_AndUnknownOnesAreRefused()
    {
        Assert.Equal(new HashSet<DelegationMode> { DelegationMode.Relay, DelegationMode.Assist }, DevicePolicy.ParseModes("relay, assist"));
        Assert.Empty(DevicePolicy.ParseModes("none"));
        Assert.Throws<FormatException>(() => DevicePolicy.ParseModes("relay,auto"));
        Assert.Throws<FormatException>(() => DevicePolicy.ParseSpendLimit("-1"));
        Assert.Equal(5000, DevicePolicy.ParseSpendLimit("5000"));
        Assert.Null(DevicePolicy.ParseSpendLimit("none"));
    }

    [Fact]
    public void AForbiddenMode_IsRefused_NeverServedInAnother()
    {
        var refused = Assert.Throws<PolicyRefusedException>(() => ModeChoice.Candidates(DelegationMode.Resume, null, DevicePolicy.ParseModes("relay")));
        Assert.Equal(PolicyRule.Modes, refused.Rule);
        Assert.Equal("policy-refused: this device may not use mode resume (its modes: relay); the owner can allow it with 'daiko home device policy --modes'", refused.Reply);
        Assert.Equal([DelegationMode.Relay], ModeChoice.Candidates(DelegationMode.Relay, null, DevicePolicy.ParseModes("relay")));
        // A hosted owner's device is changed with the site's command, naming the owner and the device.
        Assert.Equal("policy-refused: this device may not use mode resume (its modes: relay); the site's operator can allow it with 'daiko host device policy --site DIR --owner alice --name phone --modes'",
            refused.ReplyUnder(PolicyCommand.Hosted("alice"), "phone"));
        // A name that is not one plain shell word is quoted, so that the command can be pasted.
        Assert.EndsWith("the owner can allow it with 'daiko home device policy --name \"Anna's \\$phone\"'!'\"\" --modes'", refused.ReplyUnder(PolicyCommand.Home, "Anna's $phone!"), StringComparison.Ordinal);
        // The exception's message is the sentence alone (what a log line says, wherever the policy is kept).
        Assert.Equal("this device may not use mode resume (its modes: relay)", refused.Message);
        // A refusal the owner cannot lift with an option names no command.
        Assert.Equal("policy-refused: shop.example resolves to a private address; the owner can allow it for this device",
            MarketReach.PrivateRefusal("shop.example").ReplyUnder(PolicyCommand.Hosted("alice"), "phone"));
    }

    [Theory]
    [InlineData("Anna's $phone!")]
    [InlineData("a\"b`c\\d $(id)")]
    [InlineData("two  words\tand a tab")]
    [InlineData("!!")]
    [InlineData("telefon-ü")]
    public void ARemedysDeviceName_IsOneShellWord_ThatAShellReadsBackAsTheName(string name)
    {
        var command = PolicyCommand.Home.For(new PolicyRemedy("raise it", "--max-tickets"), name);
        var word = command["daiko home device policy --name ".Length..^" --max-tickets".Length];
        // bash reads the word (and runs nothing in it): printf gives the name back, byte for byte.
        var start = new System.Diagnostics.ProcessStartInfo("bash", ["-c", "printf %s " + word]) { RedirectStandardOutput = true, StandardOutputEncoding = System.Text.Encoding.UTF8 };
        using var bash = System.Diagnostics.Process.Start(start)!;
        var read = bash.StandardOutput.ReadToEnd();
        bash.WaitForExit();
        Assert.Equal(0, bash.ExitCode);
        Assert.Equal(name, read);
    }

    [Theory]
    [InlineData("resume,handoff,relay,assist", true, true, "resume,handoff,relay,assist")]
    [InlineData("relay,assist", true, true, "relay,assist")]
    [InlineData("handoff,relay", true, true, "handoff,relay")]
    [InlineData("resume,handoff,relay,assist", true, false, "handoff,relay,assist")]
    [InlineData("resume,handoff,relay,assist", false, false, "relay,assist")]
    [InlineData("resume,assist", false, false, "assist")]
    public void Auto_ChoosesOnlyAmongTheAllowedModes(string allowed, bool tls13, bool tickets, string expected)
    {
        var profile = new MarketProfile("m.test", 443, tls13, tickets, false, 0, DateTimeOffset.UnixEpoch);
        Assert.Equal(expected, string.Join(",", ModeChoice.Candidates(DelegationMode.Auto, profile, DevicePolicy.ParseModes(allowed)).Select(m => m.ToWire())));
    }

    [Fact]
    public void Auto_WithNoUsableMode_IsRefused()
    {
        var profile = new MarketProfile("m.test", 443, false, false, false, 0, DateTimeOffset.UnixEpoch);
        var refused = Assert.Throws<PolicyRefusedException>(() => ModeChoice.Candidates(DelegationMode.Auto, profile, DevicePolicy.ParseModes("resume,handoff")));
        Assert.Equal(PolicyRule.Modes, refused.Rule);
    }

    [Fact]
    public void TicketHoldings_RefuseBeyondTheLimit_UntilATicketExpires()
    {
        var time = new ManualTime();
        var holdings = new TicketHoldings(time);
        for (var i = 0; i < 4; i++)
        {
            using var held = holdings.Reserve("dev", "m.test:443", 4);
            held.Handed(time.Now.AddMinutes(10 + i));
        }

        var refused = Assert.Throws<PolicyRefusedException>(() => holdings.Reserve("dev", "m.test:443", 4));
        Assert.Equal(PolicyRule.MaxTickets, refused.Rule);
        using (holdings.Reserve("dev", "other.test:443", 4)) { } // per market
        using (holdings.Reserve("tablet", "m.test:443", 4)) { } // per device

        time.Now = time.Now.AddMinutes(10).AddSeconds(1);
        using (var again = holdings.Reserve("dev", "m.test:443", 4)) again.Handed(time.Now.AddMinutes(1));
        Assert.Equal(4, holdings.Count("dev", "m.test:443"));
    }

    [Fact]
    public void TicketHoldings_ThousandsHandedOutOfOrder_CountUntilEachOwnExpiry()
    {
        var time = new ManualTime();
        var holdings = new TicketHoldings(time);
        const int n = 3000;
        // Expiries out of the order they were handed in (markets give tickets of different lifetimes): minute 1..n, shuffled.
        var minutes = Enumerable.Range(1, n).Select(i => i * 7919 % n + 1).ToArray();
        Assert.Equal(n, minutes.Distinct().Count());
        foreach (var m in minutes)
        {
            using var held = holdings.Reserve("dev", "m.test:443", n);
            held.Handed(time.Now.AddMinutes(m));
        }
        Assert.Throws<PolicyRefusedException>(() => holdings.Reserve("dev", "m.test:443", n));
        var start = time.Now;

        foreach (var past in new[] { 1, 10, 1234, n - 1 })
        {
            time.Now = start.AddMinutes(past);
            Assert.Equal(n - past, holdings.Count("dev", "m.test:443"));
        }
        using var more = holdings.Reserve("dev", "m.test:443", n);
        Assert.Equal(2, holdings.Count("dev", "m.test:443"));
    }

    [Fact]
    public async Task TicketHoldings_ATicketCountedThatNeverReachedTheDevice_GivesItsPlaceBack_OnceEvenIfToldTwice()
    {
        var time = new ManualTime();
        var holdings = new TicketHoldings(time);
        using (var kept = holdings.Reserve("dev", "m.test:443", 2)) kept.Handed(time.Now.AddMinutes(10));
        var place = holdings.Reserve("dev", "m.test:443", 2);
        await place.HandedAsync(time.Now.AddMinutes(10), CancellationToken.None);
        await place.DisposeAsync();
        Assert.Equal(2, holdings.Count("dev", "m.test:443"));

        await place.GiveBackAsync();
        await place.GiveBackAsync();
        Assert.Equal(1, holdings.Count("dev", "m.test:443"));
    }

    [Fact]
    public async Task TicketHoldings_ATicketInHand_CountsAtOnceUntilItsOwnExpiry_DisposingKeepsIt_GivingBackFreesIt()
    {
        var time = new ManualTime();
        var holdings = new TicketHoldings(time);
        var inHand = await holdings.ReserveHandedAsync("dev", "m.test:443", 1, time.Now.AddMinutes(10), CancellationToken.None);
        await inHand.DisposeAsync();
        await Assert.ThrowsAsync<PolicyRefusedException>(() => holdings.ReserveHandedAsync("dev", "m.test:443", 1, time.Now.AddMinutes(10), CancellationToken.None));

        await inHand.GiveBackAsync();
        Assert.Equal(0, holdings.Count("dev", "m.test:443"));
        await using (await holdings.ReserveHandedAsync("dev", "m.test:443", 1, time.Now.AddMinutes(10), CancellationToken.None)) { }
        time.Now = time.Now.AddMinutes(10);
        Assert.Equal(0, holdings.Count("dev", "m.test:443"));
    }

    [Fact]
    public void TicketHoldings_AReservationNotHandedOver_GivesItsPlaceBack()
    {
        var holdings = new TicketHoldings(new ManualTime());
        using (holdings.Reserve("dev", "m.test:443", 1))
        {
            Assert.Throws<PolicyRefusedException>(() => holdings.Reserve("dev", "m.test:443", 1));
        }
        using var next = holdings.Reserve("dev", "m.test:443", 1);
        Assert.Equal(1, holdings.Count("dev", "m.test:443"));
    }

    [Fact]
    public void TicketHoldings_RoomFor_CountsThePlacesLeft_AndRefusesAFullBudget_WithoutReserving()
    {
        var time = new ManualTime();
        var holdings = new TicketHoldings(time);
        Assert.Equal(3, holdings.RoomFor("dev", "m.test:443", 3));
        using (var held = holdings.Reserve("dev", "m.test:443", 3)) held.Handed(time.Now.AddMinutes(5));
        using (var held = holdings.Reserve("dev", "m.test:443", 3)) held.Handed(time.Now.AddMinutes(10));

        Assert.Equal(1, holdings.RoomFor("dev", "m.test:443", 3));
        Assert.Equal(1, holdings.RoomFor("dev", "m.test:443", 3)); // a query reserves nothing
        Assert.Equal(3, holdings.RoomFor("tablet", "m.test:443", 3));
        Assert.Equal(PolicyRule.MaxTickets, Assert.Throws<PolicyRefusedException>(() => holdings.RoomFor("dev", "m.test:443", 2)).Rule);

        time.Now = time.Now.AddMinutes(6);
        Assert.Equal(1, holdings.RoomFor("dev", "m.test:443", 2));
    }
}

/// <summary>
/// A device's last use, noted at most every 30 s: a write the store refused is tried again at the device's next request
/// (red before: the failed write held off the next one for 30 s, so the use went unrecorded).
/// </summary>
public sealed class DeviceUseNotesTests
{
    /// <summary>A policy store that refuses writes while down and counts the uses it noted (this test's one fake).</summary>
    private sealed class FlakyUseStore : Daiko.Home.Storage.IDevicePolicyStore
    {
        public bool Down { get; set; }

        public List<DateTimeOffset> Noted { get; } = [];

        public Task<DevicePolicy?> FindAsync(string deviceName, CancellationToken cancellationToken = default) => Task.FromResult<DevicePolicy?>(null);

        public Task SaveAsync(string deviceName, DevicePolicy policy, CancellationToken cancellationToken = default) => Task.CompletedTask;

        public Task NoteUseAsync(string deviceName, DateTimeOffset at, CancellationToken cancellationToken = default)
        {
            if (Down) throw new TimeoutException("the store is down");
            Noted.Add(at);
            return Task.CompletedTask;
        }

        public Task<DateTimeOffset?> LastUseAsync(string deviceName, CancellationToken cancellationToken = default) => Task.FromResult<DateTimeOffset?>(Noted.LastOrDefault());

        public Task<string?> StockTermsAsync(string deviceName, CancellationToken cancellationToken = default) => Task.FromResult<string?>(null);

        public Task NoteStockTermsAsync(string deviceName, string terms, CancellationToken cancellationToken = default) => Task.CompletedTask;
    }

    [Fact]
    public async Task AUseTheStoreRefused_IsNotedAtTheNextRequest_AndThenAtMostEvery30Seconds()
    {
        var time = new DevicePolicyTests.ManualTime();
        var store = new FlakyUseStore();
        var policies = new DevicePolicies(store, (_, _) => Task.FromResult<string?>("phone"), time);

        await policies.NoteUseAsync("device-1");
        Assert.Single(store.Noted);

        time.Now += TimeSpan.FromSeconds(31);
        store.Down = true;
        await Assert.ThrowsAsync<TimeoutException>(() => policies.NoteUseAsync("device-1"));
        store.Down = false;
        time.Now += TimeSpan.FromSeconds(1);
        await policies.NoteUseAsync("device-1");
        Assert.Equal([time.Now - TimeSpan.FromSeconds(32), time.Now], store.Noted);

        // Within 30 s of that: not written again; past them, written.
        time.Now += TimeSpan.FromSeconds(10);
        await policies.NoteUseAsync("device-1");
        Assert.Equal(2, store.Noted.Count);
        time.Now += TimeSpan.FromSeconds(25);
        await policies.NoteUseAsync("device-1");
        Assert.Equal(3, store.Noted.Count);

        // A first use the store refused is tried again as well.
        store.Down = true;
        await Assert.ThrowsAsync<TimeoutException>(() => policies.NoteUseAsync("device-2"));
        store.Down = false;
        await policies.NoteUseAsync("device-2");
        Assert.Equal(4, store.Noted.Count);
    }
}
