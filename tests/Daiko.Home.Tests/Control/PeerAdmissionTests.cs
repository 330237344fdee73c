using System.Net;
using Xunit;
using Daiko.Home.Control;

namespace Daiko.Home.Tests.Control;

/// <summary>Strangers counted where a PROXY protocol header says they are, not where the load balancer is.</summary>
public sealed class PeerAdmissionTests
{
    [Fact]
    public void AReaddressedStranger_CountsAtItsClientsAddress_SoTheBalancersAddressNeverFills()
    {
        var admission = new PeerAdmission(new PeerLimits { MaxStrangers = 100, MaxStrangersPerAddress = 3 });
        var balancer = IPAddress.Loopback;
        var closed = new List<string>();
        PeerAdmission.Slot Connect(string client)
        {
            var slot = admission.AdmitStranger(balancer);
            slot.OnClose(() => closed.Add(client));
            admission.Readdress(slot, IPAddress.Parse(client));
            return slot;
        }

        var quiet = Connect("192.0.2.3");
        for (var i = 0; i < 10; i++) Connect("192.0.2.2");

        Assert.Equal(7, closed.Count);
        Assert.All(closed, c => Assert.Equal("192.0.2.2", c));
        Assert.Equal(IPAddress.Parse("192.0.2.3"), quiet.Address);
        Assert.Equal(4, admission.Strangers);
    }
}
