using System.Net;
using Xunit;
using Daiko.Home.Control;

namespace Daiko.Home.Tests.Control;

/// <summary>Strangers counted where a PROXY protocol header says they are, not where the load balancer is, and an IPv6 host by its /64.</summary>
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
    [Fact]
    public void OneIpv6Host_SpreadOverItsOwnSlash64_IsHeldToOneAddressesCap_AndEvictsNoOtherPeer()
    {
        var admission = new PeerAdmission(new PeerLimits());
        var terminalClosed = false;
        var terminal = admission.AdmitStranger(IPAddress.Parse("2001:db8:1::1"));
        terminal.OnClose(() => terminalClosed = true);
        var flooderClosed = 0;

        // 256 connections from one /64 (one host picks any address in it): the per-address cap holds them to 16.
        for (var i = 1; i <= 256; i++) admission.AdmitStranger(IPAddress.Parse($"2001:db8:2::{i:x}")).OnClose(() => flooderClosed++);

        Assert.False(terminalClosed, "a peer in another /64 lost its connection in its handshake");
        Assert.Equal(256 - new PeerLimits().MaxStrangersPerAddress, flooderClosed);
        Assert.Equal(new PeerLimits().MaxStrangersPerAddress + 1, admission.Strangers);
    }
}
