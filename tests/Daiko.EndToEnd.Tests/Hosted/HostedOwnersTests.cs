using Daiko.TestSupport;
using Daiko.TestSupport.Hosted;

namespace Daiko.EndToEnd.Tests.Hosted;

/// <summary>
/// What one owner's devices do on a hosted node shared with other owners (a real <c>host serve</c> process over PostgreSQL
/// and the site's SoftHSM2 token): a device's max-tickets, on one node and across two, and the node's log lines.
/// </summary>
[Collection(SecondStream.Name)]
public sealed class HostedOwnersTests : IAsyncLifetime
{
    private readonly HostedSite _site = new();

    public async Task InitializeAsync()
    {
        await _site.InitializeAsync();
        await _site.AddOwnerAsync("gail");
        await _site.AddOwnerAsync("hank");
    }

    public Task DisposeAsync() => _site.DisposeAsync();

    [Fact]
    public async Task ADeviceAtItsMaxTickets_IsStillRefused_AfterDisconnectingUntilItsOwnerWasUnloaded()
    {
        var (node, port) = await _site.StartNodeAsync(null, "--owner-idle", "2");
        using var link = SlowLink.Start(port, TimeSpan.Zero, 1e12);
        const string Unloaded = "owner 'gail' unloaded from this node";
        var terminal = await _site.EnrollAsync("gail", "stockpiler", link.Port);
        await HostedSite.Ok(["host", "device", "policy", "--site", _site.Site, "--owner", "gail", "--name", "stockpiler", "--max-tickets", "1"]);
        await HostedSite.UnlockAsOwnerAsync(terminal, "gail");

        var first = await _site.GetAsync(terminal, "resume");
        Assert.True(first.ExitCode == 0, first.ToString());
        var second = await _site.GetAsync(terminal, "resume");
        Assert.True(second.ExitCode != 0, second.ToString());
        Assert.Contains("max-tickets", second.StandardError, StringComparison.Ordinal);

        // Every channel of the device goes; once the owner is unloaded, the device connects again.
        var unloadedBefore = NodeOutput.Count(node.Output, Unloaded);
        link.DropConnections();
        await NodeOutput.WaitForCountAsync(node, Unloaded, unloadedBefore + 1, TimeSpan.FromSeconds(20));

        // The ticket it took is still unexpired, and still counted.
        var again = await _site.GetAsync(terminal, "resume");
        Assert.True(again.ExitCode != 0, again.ToString());
        Assert.Contains("max-tickets", again.StandardError, StringComparison.Ordinal);
        // Other modes are served as before.
        var relayed = await _site.GetAsync(terminal, "relay");
        Assert.True(relayed.ExitCode == 0, relayed.ToString());
    }

    [Fact]
    public async Task ADeviceAtItsMaxTicketsThroughOneNode_IsRefusedThroughAnother_AsOneCount()
    {
        var (_, firstPort) = await _site.StartNodeAsync();
        var (second, secondPort) = await _site.StartNodeAsync();
        using var link = SlowLink.Start(firstPort, TimeSpan.Zero, 1e12);
        var terminal = await _site.EnrollAsync("gail", "roamer", link.Port);
        await HostedSite.Ok(["host", "device", "policy", "--site", _site.Site, "--owner", "gail", "--name", "roamer", "--max-tickets", "1"]);
        await HostedSite.UnlockAsOwnerAsync(terminal, "gail");
        var first = await _site.GetAsync(terminal, "resume");
        Assert.True(first.ExitCode == 0, first.ToString());

        // The load balancer now sends the device's channels to the other node (its first node went away, say).
        link.Retarget(secondPort);
        link.DropConnections();
        var again = await _site.GetAsync(terminal, "resume");
        Assert.True(again.ExitCode != 0, again.ToString());
        // The remedy names the command that changes this owner's device policy on the site, not a home server's.
        Assert.Contains("the site's operator can raise it with 'daiko host device policy --site DIR --owner gail --name roamer --max-tickets'", again.StandardError, StringComparison.Ordinal);
        // Refused by the other node, which the device reached.
        await second.WaitForOutputAsync("delegate refused (policy-refused)", TimeSpan.FromSeconds(10));
        // Other modes are served there as before.
        var relayed = await _site.GetAsync(terminal, "relay");
        Assert.True(relayed.ExitCode == 0, relayed.ToString());
    }

    [Fact]
    public async Task EachLineAboutAnOwnersDevice_NamesTheOwner_WhereTwoOwnersUseOneDeviceName()
    {
        var (node, port) = await _site.StartNodeAsync();
        await _site.EnrollAsync("gail", "phone", port);
        var hanks = await _site.EnrollAsync("hank", "phone", port);
        await node.WaitForOutputAsync("owner 'gail': device 'phone'", TimeSpan.FromSeconds(10));
        await node.WaitForOutputAsync("owner 'hank': device 'phone'", TimeSpan.FromSeconds(10));
        // A refusal on hank's phone's channel is a line about it too.
        await HostedSite.UnlockAsOwnerAsync(hanks, "hank");
        Assert.NotEqual(0, (await DaikoCli.RunAsync(["terminal", "wallet", "cancel", "--terminal", hanks, "--payment", "no-such-payment"])).ExitCode);
        await node.WaitForOutputAsync(" refused (", TimeSpan.FromSeconds(10));
        await HostedSite.Ok(["terminal", "lock", "--terminal", hanks]);

        // Every line about a device says whose it is (audit lines too): "phone" alone would not tell.
        var aboutDevices = node.Output.Split('\n').Where(l => l.Contains("device ", StringComparison.Ordinal)).ToList();
        Assert.True(aboutDevices.Count >= 4, node.Output);
        Assert.All(aboutDevices, l => Assert.Matches(@"^\d\d:\d\d:\d\d owner '(gail|hank)': ", l));
        Assert.Contains(aboutDevices, l => l.Contains(" owner 'hank': device ", StringComparison.Ordinal) && l.Contains(" refused (", StringComparison.Ordinal));
        Assert.DoesNotContain(aboutDevices, l => l.Contains(" owner 'gail': device ", StringComparison.Ordinal) && l.Contains(" refused (", StringComparison.Ordinal));
    }
}
