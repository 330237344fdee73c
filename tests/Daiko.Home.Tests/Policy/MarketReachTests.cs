using System.Net;
using System.Net.Sockets;
using Daiko.Home.Policy;
using Xunit;

namespace Daiko.Home.Tests.Policy;

/// <summary>Market patterns, the private-address classes, and the check on the address actually dialled.</summary>
public sealed class MarketReachTests
{
    private static MarketReach Reach(string markets, bool allowPrivate = false) => new(DevicePolicy.ParseMarkets(markets), allowPrivate);

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("127.255.0.9")]
    [InlineData("10.1.2.3")]
    [InlineData("172.16.0.1")]
    [InlineData("172.31.255.254")]
    [InlineData("192.168.1.20")]
    [InlineData("100.64.0.1")]
    [InlineData("100.127.255.254")]
    [InlineData("169.254.169.254")]
    [InlineData("224.0.0.1")]
    [InlineData("0.0.0.0")]
    [InlineData("255.255.255.255")]
    [InlineData("::")]
    [InlineData("::1")]
    [InlineData("fd00::1")]
    [InlineData("fc12:3456::1")]
    [InlineData("fe80::1")]
    [InlineData("ff02::1")]
    [InlineData("::ffff:127.0.0.1")]
    [InlineData("::ffff:10.0.0.1")]
    [InlineData("::ffff:169.254.169.254")]
    [InlineData("::127.0.0.1")]
    [InlineData("64:ff9b::7f00:1")]
    [InlineData("2002:c0a8:0101::1")]
    public void PrivateLoopbackLinkLocalMulticastUnspecifiedAndMappedForms_AreNotPublic(string address) =>
        Assert.True(PrivateAddresses.IsPrivate(IPAddress.Parse(address)), address);

    [Theory]
    [InlineData("93.184.216.34")]
    [InlineData("8.8.8.8")]
    [InlineData("100.63.255.255")]
    [InlineData("100.128.0.1")]
    [InlineData("172.32.0.1")]
    [InlineData("2606:2800:220:1:248:1893:25c8:1946")]
    [InlineData("::ffff:8.8.8.8")]
    public void PublicAddresses_ArePublic(string address) => Assert.False(PrivateAddresses.IsPrivate(IPAddress.Parse(address)), address);

    [Fact]
    public void AZoneId_IsDroppedExceptOnALinkLocalAddress_SoTheHomesOwnAddressesMatchWithOrWithoutOne()
    {
        Assert.Equal(IPAddress.Parse("2001:db8::1"), PrivateAddresses.Normal(IPAddress.Parse("2001:db8::1%3")));
        Assert.Equal(3, PrivateAddresses.Normal(IPAddress.Parse("fe80::1%3")).ScopeId);
        Assert.Equal(IPAddress.Parse("127.0.0.1"), PrivateAddresses.Normal(IPAddress.Parse("::ffff:127.0.0.1")));
    }

    [Theory]
    [InlineData("*", "shop.example", 443, true)]
    [InlineData("*.example.com", "a.example.com", 443, true)]
    [InlineData("*.example.com", "a.b.example.com", 8443, true)]
    [InlineData("*.example.com", "example.com", 443, false)]
    [InlineData("*.example.com", "badexample.com", 443, false)]
    [InlineData("*.example.com", "example.com.evil.test", 443, false)]
    [InlineData("bank.example:8443", "bank.example", 8443, true)]
    [InlineData("bank.example:8443", "BANK.example", 8443, true)]
    [InlineData("bank.example:8443", "bank.example", 443, false)]
    [InlineData("bank.example", "bank.example", 443, true)]
    [InlineData("bank.example", "www.bank.example", 443, false)]
    [InlineData("bank.example,shop.example", "shop.example", 443, true)]
    [InlineData("none", "shop.example", 443, false)]
    public void Patterns_MatchHostsByName(string markets, string host, int port, bool expected)
    {
        var reach = Reach(markets);
        if (expected)
        {
            reach.CheckName(host, port);
        }
        else
        {
            var refused = Assert.Throws<PolicyRefusedException>(() => reach.CheckName(host, port));
            Assert.Equal(PolicyRule.Markets, refused.Rule);
            Assert.StartsWith("policy-refused: this device may not use the market", refused.Reply, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("*.*.example")]
    [InlineData("host:0")]
    [InlineData("host:70000")]
    [InlineData("10.0.0.1/8")]
    [InlineData("10.0.0.0/33")]
    [InlineData("exa mple.com")]
    public void MalformedPatterns_AreRefusedWithASentence(string pattern) =>
        Assert.Throws<FormatException>(() => MarketPattern.Parse(pattern));

    [Theory]
    [InlineData("*", "127.0.0.1")]
    [InlineData("*", "[::1]")]
    [InlineData("*", "::ffff:127.0.0.1")]
    [InlineData("*", "10.0.0.8")]
    [InlineData("*.example.com,10.0.0.9", "10.0.0.8")]
    [InlineData("127.0.0.2", "127.0.0.1")]
    [InlineData("127.0.0.1:443", "127.0.0.1")]
    public async Task PrivateAddresses_AreRefusedUnlessNamed(string markets, string host)
    {
        var refused = await Assert.ThrowsAsync<PolicyRefusedException>(() => Reach(markets).ResolveAsync(host, 8443, null, CancellationToken.None));

        Assert.Equal(PolicyRule.PrivateAddress, refused.Rule);
        Assert.Equal($"policy-refused: {host} resolves to a private address; the owner can allow it for this device", refused.Reply);
        Assert.Equal("refused by policy (markets (private address))", refused.AuditOutcome);
    }

    [Fact]
    public async Task ANameResolvingToLoopback_IsRefused_ChecksTheResolvedAddressNotTheName()
    {
        var refused = await Assert.ThrowsAsync<PolicyRefusedException>(() => Reach("*").ResolveAsync("localhost", 8443, null, CancellationToken.None));
        Assert.Equal("policy-refused: localhost resolves to a private address; the owner can allow it for this device", refused.Reply);
    }

    [Theory]
    [InlineData("127.0.0.1", "127.0.0.1", "127.0.0.1")]
    [InlineData("127.0.0.0/8", "localhost", "127.0.0.1")]
    [InlineData("127.0.0.1", "localhost", "127.0.0.1")]
    [InlineData("localhost", "localhost", "127.0.0.1")]
    [InlineData("::1", "[::1]", "::1")]
    [InlineData("10.0.0.0/8", "10.9.8.7", "10.9.8.7")]
    [InlineData("10.0.0.0/8", "::ffff:10.9.8.7", "::ffff:10.9.8.7")]
    public async Task PrivateAddresses_NamedByTheOwner_AreAllowed(string markets, string host, string dialled)
    {
        var addresses = await Reach(markets).ResolveAsync(host, 8443, null, CancellationToken.None);
        Assert.Contains(IPAddress.Parse(dialled), addresses);
        Assert.All(addresses, a => Assert.Contains(DevicePolicy.ParseMarkets(markets), m => m.NamesPrivate(host.Trim('[', ']'), 8443, a)));
    }

    [Fact]
    public async Task TheHomeWideEscapeHatch_LetsListedNamesReachPrivateAddresses()
    {
        Assert.NotEmpty(await Reach("*", allowPrivate: true).ResolveAsync("localhost", 8443, null, CancellationToken.None));
        await Assert.ThrowsAsync<PolicyRefusedException>(() => Reach("shop.example", allowPrivate: true).ResolveAsync("localhost", 8443, null, CancellationToken.None));
    }

    [Fact]
    public async Task RefusedMarket_IsNeverConnected_TheListenerSeesNoConnection()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;

        await Assert.ThrowsAsync<PolicyRefusedException>(() => Reach("*").OpenAsync("127.0.0.1", port, null, CancellationToken.None));
        await Assert.ThrowsAsync<PolicyRefusedException>(() => Reach("*").OpenAsync("localhost", port, null, CancellationToken.None));
        Assert.False(listener.Pending(), "a refused market was connected to");

        await using var allowed = await Reach("127.0.0.1").OpenAsync("localhost", port, null, CancellationToken.None);
        using var accepted = await listener.AcceptTcpClientAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(IPAddress.Loopback, ((IPEndPoint)accepted.Client.LocalEndPoint!).Address);
    }
    [Theory]
    [InlineData("localhost", "localhost", "bank.example", PolicyRule.Markets)]
    [InlineData("localhost,*", "localhost", "bank.example", PolicyRule.PrivateAddress)]
    [InlineData("shop.example,localhost,bank.example:9", "localhost", "bank.example", PolicyRule.Markets)]
    public async Task AServerNameOtherThanTheHost_IsJudgedToo_AnAllowedHostCannotPresentAForbiddenName(string markets, string host, string serverName, string rule)
    {
        Assert.NotEmpty(await Reach(markets).ResolveAsync(host, 8443, null, CancellationToken.None));

        var refused = await Assert.ThrowsAsync<PolicyRefusedException>(() => Reach(markets).ResolveAsync(host, 8443, serverName, CancellationToken.None));
        Assert.Equal(rule, refused.Rule);
        Assert.Contains(serverName, refused.Reply, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("localhost,bank.example", "localhost", "bank.example")]
    [InlineData("127.0.0.1", "localhost", "bank.example")]
    [InlineData("127.0.0.0/8", "127.0.0.1", "anything.example")]
    public async Task AServerNameTheListAllowsAtThatAddress_IsAllowed(string markets, string host, string serverName)
    {
        Reach(markets).CheckName(host, 8443, serverName);
        Assert.Contains(IPAddress.Loopback, await Reach(markets).ResolveAsync(host, 8443, serverName, CancellationToken.None));
    }

    [Theory]
    [InlineData("LocalHost", null, "localhost", null)]
    [InlineData("shop.example.", "SHOP.Example", "shop.example", null)]
    [InlineData("localhost", "Bank.Example.", "localhost", "bank.example")]
    [InlineData("::ffff:127.0.0.1", null, "127.0.0.1", null)]
    [InlineData("[::1]", null, "::1", null)]
    [InlineData("127.1", null, "127.0.0.1", null)]
    [InlineData("[2001:db8::1%3]", null, "2001:db8::1", null)]
    [InlineData("Bücher.Example", "BÜCHER.example.", "xn--bcher-kva.example", null)]
    public void AMarketHasOneSpelling_HowEverTheDeviceWroteIt(string host, string? serverName, string canonicalHost, string? canonicalServerName)
    {
        var market = Daiko.Home.Delegation.MarketRequest.Canonical(host, 443, serverName, null);
        Assert.Equal(canonicalHost, market.Host);
        Assert.Equal(canonicalServerName, market.ServerName);
        Assert.Equal(canonicalServerName is null ? $"{canonicalHost}:443" : $"{canonicalHost}:443 as {canonicalServerName}", market.Where);
    }

    [Theory]
    [InlineData("evil.example\uFF0F.shop.example")]
    [InlineData("evil.example\uFF20shop.example")]
    [InlineData("evil.example\uFF1F.shop.example")]
    public void ANameIdnaWouldMapOntoADelimiter_IsNotCanonicalisedIntoOne(string host)
    {
        var market = Daiko.Home.Delegation.MarketRequest.Canonical(host, 443, null, null);

        Assert.DoesNotContain(market.Host, c => c is '/' or '@' or '?');
    }
}
