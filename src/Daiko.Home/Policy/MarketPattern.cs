using System.Globalization;
using System.Net;

namespace Daiko.Home.Policy;

/// <summary>
/// One entry of a device's market list: <c>*</c> (any public host), <c>*.example.com</c> (its subdomains),
/// <c>bank.example</c> or <c>bank.example:8443</c> (that host, any port or that port), an address
/// (<c>127.0.0.1</c>, <c>[::1]:8443</c>) or a CIDR block (<c>10.0.0.0/8</c>). A private or loopback
/// market is allowed only by an entry that names it: its host name exactly, its address, or a block
/// holding its address; <c>*</c> and <c>*.domain</c> grant public addresses only.
/// </summary>
public sealed record MarketPattern
{
    private MarketPattern(string text) => Text = text;

    public string Text { get; }

    /// <summary>A host name ("any" for <c>*</c>, the suffix with its dot for <c>*.domain</c>), lower case; null for addresses and blocks.</summary>
    private string? Host { get; init; }

    private bool AnyHost { get; init; }

    private bool Suffix { get; init; }

    private IPNetwork? Block { get; init; }

    private int? Port { get; init; }

    /// <summary>An address or a block: it may allow a market by the address its name resolves to.</summary>
    public bool CanCoverAddresses => Block is not null;

    public static readonly MarketPattern AnyPublic = new("*") { AnyHost = true };

    public override string ToString() => Text;

    /// <summary>Parses one entry; FormatException with a sentence saying what is wrong.</summary>
    public static MarketPattern Parse(string text)
    {
        var t = text.Trim();
        if (t == "*") return AnyPublic;
        if (t.Length is 0 or > 260) throw new FormatException($"'{text}' is not a market pattern (a host, *.domain, host:port, an address or a CIDR block)");
        if (t.Contains('/'))
        {
            if (!IPNetwork.TryParse(t, out var block)) throw new FormatException($"'{t}' is not a CIDR block (e.g. 10.0.0.0/8 or fd00::/8)");
            if (!block.BaseAddress.Equals(IPAddress.Parse(t[..t.IndexOf('/')])))
            {
                throw new FormatException($"'{t}' is not a CIDR block: its address has bits set beyond the prefix (did you mean {block}?)");
            }
            return new MarketPattern(t) { Block = block };
        }
        var (host, port) = SplitPort(t);
        if (IPAddress.TryParse(host, out var address))
        {
            address = PrivateAddresses.Normal(address);
            return new MarketPattern(t) { Block = new IPNetwork(address, address.GetAddressBytes().Length * 8), Port = port };
        }
        var wildcard = host.StartsWith("*.", StringComparison.Ordinal);
        var name = (wildcard ? host[1..] : host).ToLowerInvariant();
        if (name.Contains('*') || Uri.CheckHostName(name.TrimStart('.')) != UriHostNameType.Dns)
        {
            throw new FormatException($"'{t}' is not a market pattern (a host, *.domain, host:port, an address or a CIDR block)");
        }
        return new MarketPattern(t) { Host = name, Suffix = wildcard, Port = port };
    }

    private static (string Host, int? Port) SplitPort(string text)
    {
        if (text.StartsWith('['))
        {
            var close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0) throw new FormatException($"'{text}' has no closing ']'");
            var rest = text[(close + 1)..];
            return (text[1..close], rest.Length == 0 ? null : rest.StartsWith(':') ? ParsePort(rest[1..], text) : throw new FormatException($"'{text}' has text after ']'"));
        }
        var colon = text.LastIndexOf(':');
        if (colon < 0 || text.IndexOf(':') != colon) return (text, null); // no port, or a bare IPv6 address
        return (text[..colon], ParsePort(text[(colon + 1)..], text));
    }

    private static int ParsePort(string port, string text) =>
        int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is >= 1 and <= 65535
            ? p
            : throw new FormatException($"'{text}' has no port from 1 to 65535 after ':'");

    /// <summary>Whether this entry covers a market asked for by <paramref name="host"/> (name or address literal) on <paramref name="port"/>, judged by the name alone.</summary>
    public bool MatchesName(string host, int port) => (Port is not { } p || p == port) && MatchesNameOnAnyPort(host);

    /// <summary>Whether this entry covers <paramref name="host"/> on some port, judged by the name alone.</summary>
    public bool MatchesNameOnAnyPort(string host)
    {
        if (AnyHost) return true;
        if (Host is null) return IPAddress.TryParse(host.Trim('[', ']'), out var literal) && Block!.Value.Contains(PrivateAddresses.Normal(literal));
        var h = host.TrimEnd('.').ToLowerInvariant();
        return Suffix ? h.EndsWith(Host, StringComparison.Ordinal) && h.Length > Host.Length : h == Host;
    }

    /// <summary>Whether this entry names the market explicitly enough to allow a private <paramref name="address"/>: its exact host name, or its address in a listed address or block.</summary>
    public bool NamesPrivate(string host, int port, IPAddress address)
    {
        if (Port is { } p && p != port) return false;
        if (AnyHost || Suffix) return false;
        if (Host is not null) return host.TrimEnd('.').Equals(Host, StringComparison.OrdinalIgnoreCase);
        return Block!.Value.Contains(PrivateAddresses.Normal(address));
    }

    /// <summary>Whether this entry allows the public <paramref name="address"/> the market resolved to (an address or block entry allows what it holds).</summary>
    public bool CoversAddress(int port, IPAddress address) =>
        (Port is not { } p || p == port) && Block is { } block && block.Contains(PrivateAddresses.Normal(address));
}
