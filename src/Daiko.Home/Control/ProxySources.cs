using System.Net;
using System.Net.Sockets;

namespace Daiko.Home.Control;

/// <summary>
/// The load balancers whose PROXY protocol headers a listener believes (<c>--proxy-from</c>): addresses
/// and CIDR blocks. A connection from any other peer is refused before its header is read, so a
/// terminal that reaches the port directly cannot name an address of its choosing for the per-source
/// limits. By default only loopback (a balancer on the same machine).
/// </summary>
public sealed class ProxySources
{
    private readonly IReadOnlyList<IPNetwork> _networks;

    private ProxySources(IReadOnlyList<IPNetwork> networks) => _networks = networks;

    /// <summary>127.0.0.0/8 and ::1.</summary>
    public static ProxySources Loopback { get; } = new([IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("::1/128")]);

    /// <summary>Comma-separated addresses or CIDR blocks, e.g. <c>127.0.0.1,::1,10.0.0.0/24</c>.</summary>
    /// <exception cref="FormatException">an entry is neither an address nor a CIDR block, or the list is empty.</exception>
    public static ProxySources Parse(string text)
    {
        var networks = new List<IPNetwork>();
        foreach (var entry in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (IPNetwork.TryParse(entry, out var network)) networks.Add(network);
            else if (IPAddress.TryParse(entry, out var address)) networks.Add(new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128));
            else throw new FormatException($"'{entry}' is neither an IP address nor a CIDR block (such as 10.0.0.0/24)");
        }
        return networks.Count == 0 ? throw new FormatException("name at least one load balancer address") : new ProxySources(networks);
    }

    /// <summary>Whether a connection from <paramref name="peer"/> may start with a PROXY header (an IPv4 address mapped into IPv6 counts as IPv4).</summary>
    public bool Allows(IPAddress peer)
    {
        var address = peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer;
        return _networks.Any(n => n.Contains(address));
    }

    public override string ToString() => string.Join(",", _networks);
}
