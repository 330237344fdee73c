using System.Globalization;
using System.Net;

namespace Daiko.Terminal.Forwarding;

/// <summary>
/// The local user at the other end of a loopback TCP connection, read from the kernel's socket tables
/// (<c>/proc/net/tcp</c> and <c>tcp6</c>) as an ident server does: a TCP socket carries no SO_PEERCRED, and a
/// forwarded port must not lend the owner's identity to every user of a shared machine.
/// </summary>
internal static class LoopbackPeers
{
    private static readonly string[] Tables = ["/proc/net/tcp", "/proc/net/tcp6"];

    /// <summary>The uid owning the socket connected from <paramref name="client"/> to <paramref name="server"/>; null when no table shows it.</summary>
    public static uint? UserOf(IPEndPoint client, IPEndPoint server)
    {
        foreach (var table in Tables)
        {
            if (!File.Exists(table)) continue;
            foreach (var line in File.ReadLines(table).Skip(1))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
                if (fields.Length < 8) continue;
                if (Parse(fields[1]) is { } local && Parse(fields[2]) is { } remote && Same(local, client) && Same(remote, server)
                    && uint.TryParse(fields[7], NumberStyles.None, CultureInfo.InvariantCulture, out var uid))
                {
                    return uid;
                }
            }
        }
        return null;
    }

    /// <summary>
    /// "0100007F:1F90" (IPv4) or 32 hex digits and a port (IPv6): the address as the kernel prints it, each
    /// 32-bit word in the machine's byte order (little-endian on every machine .NET runs on here).
    /// </summary>
    internal static IPEndPoint? Parse(string text)
    {
        var colon = text.IndexOf(':');
        if (colon < 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var port)) return null;
        var hex = text[..colon];
        if (hex.Length is not (8 or 32)) return null;
        byte[] bytes;
        try
        {
            bytes = Convert.FromHexString(hex);
        }
        catch (FormatException)
        {
            return null;
        }
        for (var word = 0; word < bytes.Length; word += 4) Array.Reverse(bytes, word, 4);
        return new IPEndPoint(new IPAddress(bytes), port);
    }

    private static bool Same(IPEndPoint a, IPEndPoint b) => a.Port == b.Port && a.Address.MapToIPv6().Equals(b.Address.MapToIPv6());
}
