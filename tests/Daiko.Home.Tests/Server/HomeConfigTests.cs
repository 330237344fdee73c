using Daiko.Home.Hosting;
using Daiko.Home.Policy;
using Daiko.Protocol;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>DIR/home.json as the home server reads it: the defaults for new devices and the log format.</summary>
public sealed class HomeConfigTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-config");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void WithoutAFile_NewDevicesGetTheBuiltInDefaultPolicy()
    {
        var policy = HomeConfig.Load(_dir.Path).DeviceDefaults.ToPolicy();

        Assert.Equal(DevicePolicy.Default.MarketsText, policy.MarketsText);
        Assert.Equal(DevicePolicy.Default.ModesText, policy.ModesText);
        Assert.Equal(DevicePolicy.DefaultMaxTickets, policy.MaxTickets);
        Assert.Null(policy.SpendLimitPerDay);
        Assert.Null(HomeConfig.Load(_dir.Path).LogFormat);
    }

    [Fact]
    public void DeviceDefaults_BecomeThePolicy()
    {
        File.WriteAllText(HomeConfig.PathIn(_dir.Path), """{ "device_defaults": { "markets": "*.shop.example,10.0.0.0/8", "modes": "resume,relay", "spend_limit": 0, "max_tickets": 2 }, "log_format": "json" }""");

        var config = HomeConfig.Load(_dir.Path);
        var policy = config.DeviceDefaults.ToPolicy();

        Assert.Equal("*.shop.example,10.0.0.0/8", policy.MarketsText);
        Assert.Equal(new HashSet<DelegationMode> { DelegationMode.Resume, DelegationMode.Relay }, policy.Modes);
        Assert.Equal(0, policy.SpendLimitPerDay);
        Assert.Equal(2, policy.MaxTickets);
        Assert.Equal("json", config.LogFormat);
    }

    [Theory]
    [InlineData("""{ "device_defaults": { "modes": "resume,teleport" } }""", "device_defaults: 'teleport' is not a mode")]
    [InlineData("""{ "device_defaults": { "markets": "10.0.0.1/8" } }""", "device_defaults: '10.0.0.1/8' is not a CIDR block")]
    [InlineData("""{ "device_defaults": { "max_tickets": 5000 } }""", "device_defaults: max_tickets must be 0 to 1000")]
    [InlineData("""{ "device_defaults": { "spend_limit": -1 } }""", "device_defaults: spend_limit must be 0 or more")]
    [InlineData("""{ "log_format": "xml" }""", "log_format must be \"plain\" or \"json\"")]
    public void AMalformedFile_IsRefused_NamingTheFieldAndTheFile(string json, string sentence)
    {
        File.WriteAllText(HomeConfig.PathIn(_dir.Path), json);

        var e = Assert.Throws<InvalidDataException>(() => HomeConfig.Load(_dir.Path));

        Assert.Contains(sentence, e.Message, StringComparison.Ordinal);
        Assert.StartsWith(HomeConfig.PathIn(_dir.Path), e.Message, StringComparison.Ordinal);
    }
}
