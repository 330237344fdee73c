using System.Net;
using Daiko.Home.Server;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Server;

[Collection("home card")]
public sealed class StatusPageTests
{
    [Fact]
    public async Task StatusPage_ShowsCardStateAndDevices_WithNamesEscaped()
    {
        await using var home = HomeFixture.Start();
        await home.Server.Devices.AddEnrollmentCodeAsync("<script>x</script>");
        await home.Server.Devices.RegisterAsync("<script>x</script>", new byte[91]);
        var port = Loopback.FreePort();
        await using var page = StatusPage.Start(new IPEndPoint(IPAddress.Loopback, port), home.Card, home.Server.Devices);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };

        var html = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/"));

        Assert.Contains("Home card <span class=\"state\">locked</span>", html, StringComparison.Ordinal);
        Assert.Contains("&lt;script&gt;x&lt;/script&gt;", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<script>", html, StringComparison.Ordinal);
        Assert.Contains("name=\"viewport\"", html, StringComparison.Ordinal);
    }
}
