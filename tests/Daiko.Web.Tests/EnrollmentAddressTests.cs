using System.Net;
using Daiko.Home.Web;

namespace Daiko.Web.Tests;

/// <summary>The address an enrollment code names when home.json sets no "advertise" (no socket: the addresses are given).</summary>
public sealed class EnrollmentAddressTests
{
    private static readonly IPAddress[] Machine = [IPAddress.Loopback, IPAddress.Parse("169.254.3.4"), IPAddress.Parse("fe80::1"), IPAddress.Parse("2001:db8::7"), IPAddress.Parse("192.168.1.20")];

    [Fact]
    public void AListenerOnOneAddress_IsNamedByIt()
    {
        Assert.Equal(("127.0.0.1:7443", (string?)null), EnrollmentAddress.Choose(new IPEndPoint(IPAddress.Loopback, 7443), "localhost", () => Machine));
        Assert.Equal(("[2001:db8::7]:7443", (string?)null), EnrollmentAddress.Choose(new IPEndPoint(IPAddress.Parse("2001:db8::7"), 7443), "127.0.0.1", () => Machine));
    }

    [Fact]
    public void AListenerOnEveryAddress_IsNamedByTheHostTheConsoleWasOpenedUnder()
    {
        Assert.Equal(("home.example:7443", (string?)null), EnrollmentAddress.Choose(new IPEndPoint(IPAddress.Any, 7443), "home.example", () => Machine));
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("localhost")]
    [InlineData("[::1]")]
    public void AConsoleOpenedOnLoopback_NamesAnAddressOfThisMachineAnotherCanReach_AndSaysSo(string host)
    {
        var (address, note) = EnrollmentAddress.Choose(new IPEndPoint(IPAddress.Any, 7443), host, () => Machine);

        Assert.Equal("192.168.1.20:7443", address);
        Assert.Contains("advertise", note, StringComparison.Ordinal);
        // Listening on IPv6 too, an IPv4 address still comes first; a link-local one (169.254/16, fe80::/10) never.
        Assert.Equal("192.168.1.20:7443", EnrollmentAddress.Choose(new IPEndPoint(IPAddress.IPv6Any, 7443), host, () => Machine).Address);
        Assert.Equal("[2001:db8::7]:7443", EnrollmentAddress.Choose(new IPEndPoint(IPAddress.IPv6Any, 7443), host, () => Machine[..4]).Address);
    }

    [Fact]
    public void AMachineWithLoopbackAlone_KeepsTheLoopbackName_AndTheNoteSaysTheCodeWorksOnlyHere()
    {
        var (address, note) = EnrollmentAddress.Choose(new IPEndPoint(IPAddress.Any, 7443), "127.0.0.1", () => [IPAddress.Loopback]);

        Assert.Equal("127.0.0.1:7443", address);
        Assert.Contains("works only on this machine", note, StringComparison.Ordinal);
    }
}
