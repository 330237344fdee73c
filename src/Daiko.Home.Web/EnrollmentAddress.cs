namespace Daiko.Home.Web;

/// <summary>The HOST:PORT an enrollment code names, when the owner did not set home.json's "advertise".</summary>
public static class EnrollmentAddress
{
    /// <summary>
    /// Where a terminal reaches a control listener at <paramref name="listen"/>: its own address; when it listens on every
    /// address, the host the console was opened under, unless that is a loopback name (the documented setup: console on
    /// 127.0.0.1, control listener on 0.0.0.0), which a phone scanning the code would take for itself: then the first of
    /// <paramref name="machine"/>'s addresses a terminal elsewhere can reach, said so in the note (or, with none, the
    /// note says the code will not work from another machine).
    /// </summary>
    public static (string Address, string? Note) Choose(System.Net.IPEndPoint listen, string requestHost, Func<IEnumerable<System.Net.IPAddress>> machine)
    {
        static string Format(System.Net.IPAddress address, int port) =>
            address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]:{port}" : $"{address}:{port}";
        if (!listen.Address.Equals(System.Net.IPAddress.Any) && !listen.Address.Equals(System.Net.IPAddress.IPv6Any)) return (Format(listen.Address, listen.Port), null);
        var loopback = requestHost.Equals("localhost", StringComparison.OrdinalIgnoreCase)
            || System.Net.IPAddress.TryParse(requestHost.Trim('[', ']'), out var host) && System.Net.IPAddress.IsLoopback(host);
        if (!loopback) return ($"{requestHost}:{listen.Port}", null);
        var reachable = machine().Where(a => !System.Net.IPAddress.IsLoopback(a) && !a.IsIPv6LinkLocal && !a.IsIPv6Multicast && !IsIPv4LinkLocal(a)
                && (a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork || listen.Address.Equals(System.Net.IPAddress.IPv6Any)))
            .OrderBy(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 0 : 1).ToList();
        return reachable.Count > 0
            ? (Format(reachable[0], listen.Port), $"The console was opened on loopback, so the code names this machine's address {reachable[0]}; set \"advertise\" in home.json to the name or address terminals use.")
            : ($"{requestHost}:{listen.Port}", "This machine has no address but loopback: the code works only on this machine. Set \"advertise\" in home.json to the name or address terminals use.");
    }

    /// <summary>169.254.0.0/16: an address a machine gave itself for want of one, reachable on its link alone.</summary>
    private static bool IsIPv4LinkLocal(System.Net.IPAddress address) =>
        address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && address.GetAddressBytes() is [169, 254, _, _];

    /// <summary>This machine's unicast addresses on interfaces that are up.</summary>
    public static IEnumerable<System.Net.IPAddress> MachineAddresses() =>
        System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
            .Where(i => i.OperationalStatus == System.Net.NetworkInformation.OperationalStatus.Up)
            .SelectMany(i => i.GetIPProperties().UnicastAddresses.Select(u => u.Address));
}
