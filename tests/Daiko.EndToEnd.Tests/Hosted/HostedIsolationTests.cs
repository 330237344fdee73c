using Daiko.TestSupport;
using Daiko.TestSupport.Hosted;

namespace Daiko.EndToEnd.Tests.Hosted;

/// <summary>
/// Strict isolation between the owners of one hosted deployment, against a real <c>daiko host serve</c>:
/// two owners whose devices even share a name; every request a device makes reaches its own owner's
/// card, sessions, devices, wallet and audit, and nothing of the other's.
/// </summary>
[Collection(SecondStream.Name)]
public sealed class HostedIsolationTests(HostedIsolationTests.TwoOwners owners) : IClassFixture<HostedIsolationTests.TwoOwners>
{
    /// <summary>One site, owners alice and bob, one node: each test enrolls devices of its own.</summary>
    public sealed class TwoOwners : IAsyncLifetime
    {
        public HostedSite Site { get; } = new();

        public int Port { get; private set; }

        public async Task InitializeAsync()
        {
            await Site.InitializeAsync();
            await Site.AddOwnerAsync("alice");
            await Site.AddOwnerAsync("bob");
            (_, Port) = await Site.StartNodeAsync();
        }

        public Task DisposeAsync() => Site.DisposeAsync();
    }

    private HostedSite Site => owners.Site;

    private int Port => owners.Port;

    [Fact]
    public async Task EachRequestOfADevice_ReachesItsOwnOwnerOnly()
    {
        var alicePhone = await Site.EnrollAsync("alice", "phone", Port);
        var bobPhone = await Site.EnrollAsync("bob", "phone", Port);

        // Another owner's PINs are wrong here, and count against this owner's card only.
        var (alicePin1, alicePin2) = HostedSite.PinsOf("alice");
        var crossed = await HostedSite.UnlockAsync(bobPhone, alicePin1, alicePin2);
        Assert.Equal(1, crossed.ExitCode);
        Assert.Contains("wrong PIN1", crossed.StandardError, StringComparison.Ordinal);
        Assert.Equal(2, (await Site.CardAsync("bob")).Pin1Left);
        Assert.Equal(3, (await Site.CardAsync("alice")).Pin1Left);
        await HostedSite.Ok(["host", "card", "status", "--site", Site.Site, "--owner", "bob"]);

        // Alice unlocks: her card is crypto-ready, and her device delegates as her in every mode.
        await HostedSite.UnlockAsOwnerAsync(alicePhone, "alice");
        foreach (var mode in new[] { "relay", "handoff", "resume", "assist" })
        {
            var get = await Site.GetAsync(alicePhone, mode);
            Assert.True(get.ExitCode == 0, $"{mode}: {get}");
            Assert.Contains("Alice Example", get.StandardOutput, StringComparison.Ordinal);
            Assert.DoesNotContain("Bob Example", get.StandardOutput, StringComparison.Ordinal);
        }

        // Bob's device of the same name gets nothing from Alice's unlocked card: no delegation, no wallet.
        foreach (var mode in new[] { "relay", "assist", "auto" })
        {
            var refused = await Site.GetAsync(bobPhone, mode);
            Assert.True(refused.ExitCode == 1, $"bob's device delegated on alice's card ({mode}): {refused}");
            Assert.DoesNotContain("Alice Example", refused.StandardOutput, StringComparison.Ordinal);
        }
        var balance = await DaikoCli.RunAsync(["terminal", "wallet", "balance", "--terminal", bobPhone]);
        Assert.Equal(1, balance.ExitCode);
        Assert.Equal(("crypto-ready", 3, 3), await Site.CardAsync("alice"));

        // Bob unlocks with his own PINs and is himself at the market.
        await HostedSite.UnlockAsOwnerAsync(bobPhone, "bob");
        var bobs = await Site.GetAsync(bobPhone);
        Assert.True(bobs.ExitCode == 0, bobs.ToString());
        Assert.Contains("Bob Example", bobs.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("Alice Example", bobs.StandardOutput, StringComparison.Ordinal);

        // Each owner's audit names only that owner's devices; each schema's sessions only its own.
        foreach (var (owner, other) in new[] { ("alice", "bob"), ("bob", "alice") })
        {
            var own = await Site.QueryAsync($"SELECT id FROM owner_{owner}.devices");
            var foreign = await Site.QueryAsync($"SELECT id FROM owner_{other}.devices");
            var audited = await Site.QueryAsync($"SELECT DISTINCT device FROM owner_{owner}.audit WHERE device IS NOT NULL");
            Assert.NotEmpty(audited);
            Assert.All(audited, id => Assert.Contains(id, own));
            Assert.All(audited, id => Assert.DoesNotContain(id, foreign));
            Assert.All(await Site.QueryAsync($"SELECT device_id FROM owner_{owner}.device_sessions"), id => Assert.Contains(id, own));
        }
    }

    [Fact]
    public async Task RevokingOneOwnersDevice_LeavesTheOtherOwnersDeviceOfTheSameName()
    {
        var alicePhone = await Site.EnrollAsync("alice", "watch", Port);
        var bobPhone = await Site.EnrollAsync("bob", "watch", Port);
        await HostedSite.UnlockAsOwnerAsync(alicePhone, "alice");
        await HostedSite.UnlockAsOwnerAsync(bobPhone, "bob");

        await HostedSite.Ok(["host", "device", "revoke", "--site", Site.Site, "--owner", "alice", "--name", "watch"]);

        var refused = await Site.GetAsync(alicePhone);
        Assert.Equal(1, refused.ExitCode);
        var served = await Site.GetAsync(bobPhone);
        Assert.True(served.ExitCode == 0, served.ToString());
        Assert.Contains("Bob Example", served.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnEnrollmentCode_EnrollsIntoItsOwnerOnly_AndAStrangersCodeIntoNobody()
    {
        var tablet = await Site.EnrollAsync("bob", "tablet", Port);

        var bobs = (await HostedSite.Ok(["host", "device", "list", "--site", Site.Site, "--owner", "bob", "--json"])).StandardOutput;
        var alices = (await HostedSite.Ok(["host", "device", "list", "--site", Site.Site, "--owner", "alice", "--json"])).StandardOutput;
        Assert.Contains("\"tablet\"", bobs, StringComparison.Ordinal);
        Assert.DoesNotContain("\"tablet\"", alices, StringComparison.Ordinal);
        await HostedSite.UnlockAsOwnerAsync(tablet, "bob");
        Assert.Contains("Bob Example", (await Site.GetAsync(tablet)).StandardOutput, StringComparison.Ordinal);

        // A well-formed code whose public id no owner issued (its pin part right for it and the site's key, so the terminal
        // sends it) is refused, and nothing is enrolled anywhere.
        var code = (await HostedSite.Ok(["host", "device", "add", "--site", Site.Site, "--owner", "alice", "--name", "laptop"])).StandardOutput.Trim();
        var (sent, _) = Daiko.Protocol.EnrollmentCode.Split(code);
        using var identity = Daiko.Home.Trust.HomeIdentity.Load(Site.Site, "host init");
        var forged = Daiko.Protocol.EnrollmentCode.Compose("ZZZZ" + sent[4..], identity.SpkiHash);
        var stranger = await DaikoCli.RunAsync(["terminal", "enroll", "--terminal", Path.Combine(Site.Dir.Path, "stranger"), "--home", $"127.0.0.1:{Port}", "--code", forged], HostedSite.AccessPin + "\n");
        Assert.Equal(1, stranger.ExitCode);
        Assert.Contains("not valid", stranger.StandardError, StringComparison.Ordinal);
        Assert.Empty(await Site.QueryAsync("SELECT name FROM owner_alice.devices WHERE name = 'laptop' UNION ALL SELECT name FROM owner_bob.devices WHERE name = 'laptop'"));

        // Wrong codes from one address: past the free ones it is told to wait, as a home server tells it, and the right
        // code sent again too soon is told the same (not that it is not valid), without holding the address back longer.
        var from = "127.0.3.40";
        var refusals = new List<string>();
        async Task<string> Refused(string secret, Daiko.TestSupport.Hostile.ControlPeer? over = null) =>
            Assert.IsType<Daiko.Protocol.Messages.ErrorReply>(await Daiko.TestSupport.Hostile.ControlPeer.TryEnrollAsync(Port, secret, from, over)).Message;
        for (var i = 0; i < Daiko.Home.Devices.EnrollmentLimiter.FreeFailures - 1; i++) refusals.Add(await Refused("ZZZZ" + sent[4..]));
        // The last free failure starts a 1 s wait: the two attempts after it go over connections opened beforehand, so
        // that only their round trips fall in that second (two handshakes on a loaded machine could outlast it).
        await using var next = await Daiko.TestSupport.Hostile.ControlPeer.ConnectAsync(Port, from);
        await using var soon = await Daiko.TestSupport.Hostile.ControlPeer.ConnectAsync(Port, from);
        refusals.Add(await Refused("ZZZZ" + sent[4..]));
        refusals.Add(await Refused("ZZZZ" + sent[4..], next));
        var tooSoon = await Refused(sent, soon);
        Assert.All(refusals.Take(Daiko.Home.Devices.EnrollmentLimiter.FreeFailures), m => Assert.Equal("the enrollment code is not valid", m));
        Assert.StartsWith("too many wrong enrollment codes from this address; try again in ", refusals[^1], StringComparison.Ordinal);
        Assert.Equal("too many wrong enrollment codes from this address; try again in 1 s", tooSoon);
        await Task.Delay(TimeSpan.FromSeconds(1.2));
        await Daiko.TestSupport.Hostile.ControlPeer.EnrollAsync(Port, code, from);
        Assert.Single(await Site.QueryAsync("SELECT name FROM owner_alice.devices WHERE name = 'laptop'"));
    }
}
