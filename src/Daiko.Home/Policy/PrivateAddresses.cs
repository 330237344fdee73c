using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace Daiko.Home.Policy;

/// <summary>
/// Addresses a market must not have unless the owner named it: loopback, private (RFC 1918, RFC 4193,
/// 100.64.0.0/10), link-local, multicast, unspecified and reserved ranges, the same behind an IPv4-mapped,
/// IPv4-compatible, NAT64 or 6to4 IPv6 address, and the home server's own addresses.
/// </summary>
public static class PrivateAddresses
{
    private static readonly IPNetwork[] V4 =
    [
        IPNetwork.Parse("0.0.0.0/8"), IPNetwork.Parse("10.0.0.0/8"), IPNetwork.Parse("100.64.0.0/10"), IPNetwork.Parse("127.0.0.0/8"),
        IPNetwork.Parse("169.254.0.0/16"), IPNetwork.Parse("172.16.0.0/12"), IPNetwork.Parse("192.0.0.0/24"), IPNetwork.Parse("192.168.0.0/16"),
        IPNetwork.Parse("198.18.0.0/15"), IPNetwork.Parse("224.0.0.0/4"), IPNetwork.Parse("240.0.0.0/4"),
    ];

    private static readonly IPNetwork[] V6 =
    [
        IPNetwork.Parse("::/128"), IPNetwork.Parse("::1/128"), IPNetwork.Parse("fc00::/7"), IPNetwork.Parse("fe80::/10"),
        IPNetwork.Parse("fec0::/10"), IPNetwork.Parse("ff00::/8"), IPNetwork.Parse("100::/64"),
    ];

    private static readonly Lazy<HashSet<IPAddress>> OwnAddresses = new(ReadOwnAddresses);

    /// <summary>True for an address a market on the public internet never has (or one of this machine's own).</summary>
    public static bool IsPrivate(IPAddress address)
    {
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            if (Embedded(address) is { } v4) return IsPrivate(v4);
            if (V6.Any(n => n.Contains(address))) return true;
        }
        else if (V4.Any(n => n.Contains(address)))
        {
            return true;
        }
        return OwnAddresses.Value.Contains(Normal(address));
    }

    /// <summary>The IPv4 address an IPv6 address carries (mapped, compatible, NAT64 64:ff9b::/96, 6to4 2002::/16), or null.</summary>
    public static IPAddress? Embedded(IPAddress address)
    {
        if (address.AddressFamily != AddressFamily.InterNetworkV6) return null;
        if (address.IsIPv4MappedToIPv6) return address.MapToIPv4();
        var b = address.GetAddressBytes();
        if (b.AsSpan(0, 12).IndexOfAnyExcept((byte)0) < 0 && !(b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1))
        {
            return new IPAddress(b.AsSpan(12, 4)); // ::a.b.c.d (IPv4-compatible, deprecated)
        }
        if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b.AsSpan(4, 8).IndexOfAnyExcept((byte)0) < 0)
        {
            return new IPAddress(b.AsSpan(12, 4)); // 64:ff9b::/96
        }
        if (b[0] == 0x20 && b[1] == 0x02) return new IPAddress(b.AsSpan(2, 4)); // 2002:AABB:CCDD::/48
        return null;
    }

    /// <summary>
    /// An IPv4-mapped address as plain IPv4 (so that ::ffff:127.0.0.1 and 127.0.0.1 compare equal), and
    /// without a zone id unless it is link-local (a zone id changes nothing in dialling another address,
    /// but IPAddress.Equals compares it: the home server's own addresses must match with or without one).
    /// </summary>
    public static IPAddress Normal(IPAddress address) =>
        address.IsIPv4MappedToIPv6 ? address.MapToIPv4()
        : address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 && address.ScopeId != 0 && !address.IsIPv6LinkLocal ? new IPAddress(address.GetAddressBytes())
        : address;

    private static HashSet<IPAddress> ReadOwnAddresses()
    {
        var own = new HashSet<IPAddress>();
        try
        {
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
            {
                foreach (var unicast in nic.GetIPProperties().UnicastAddresses) own.Add(Normal(unicast.Address));
            }
        }
        catch (NetworkInformationException)
        {
            // Without the interface list only the fixed ranges above apply (they cover the usual home addresses).
        }
        return own;
    }
}
