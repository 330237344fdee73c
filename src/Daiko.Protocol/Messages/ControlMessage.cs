using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Messages;

/// <summary>
/// One control-protocol message. Each message is a sealed record here; on the wire it is the CBOR
/// map of its <see cref="Type"/> and fields (docs/protocol.md). Requests and notifications are sent
/// as they are; replies carry the request's id and <c>re: true</c>.
/// </summary>
public abstract record ControlMessage
{
    /// <summary>The message's type on the wire (<c>t</c>).</summary>
    public abstract string Type { get; }

    /// <summary>Whether this message answers a request (sent with <c>re: true</c>).</summary>
    public virtual bool IsReply => false;

    internal abstract void Write(FieldWriter w);

    /// <summary>Never prints fields: several carry PINs, PSKs or traffic secrets.</summary>
    public sealed override string ToString() => Type;
}

/// <summary>A message that answers a request.</summary>
public abstract record ControlReply : ControlMessage
{
    public sealed override bool IsReply => true;
}

/// <summary>An address of a market as the terminal asks for it.</summary>
public sealed record MarketAddress(string Host, int Port, string? Sni, string? Alpn)
{
    internal void Write(FieldWriter w)
    {
        w.Text("host", Host);
        w.Int("port", Port);
        w.TextOrNull("sni", Sni);
        w.TextOrNull("alpn", Alpn);
    }

    internal static MarketAddress Read(FieldReader r)
    {
        var host = HostName(r, "host", r.Text("host", ControlProtocol.MaxHostLength, allowEmpty: false));
        var port = r.Int32("port", 1, 65535);
        var sni = r.TextOrNull("sni", ControlProtocol.MaxHostLength) is { } name ? HostName(r, "sni", name) : null;
        var alpn = r.TextOrNull("alpn", ControlProtocol.MaxAlpnLength);
        if (alpn is { Length: 0 }) throw new ProtocolException($"field 'alpn' of '{r.Type}' must be null or 1 to 255 characters", "alpn");
        return new MarketAddress(host, port, sni, alpn);
    }

    /// <summary>
    /// A host or server name as a name lookup, a policy match and a log line may safely take it: no
    /// control character (a NUL would end the name the resolver sees after the policy judged all of it;
    /// a line break would forge a log line), no space or line separator, no bidirectional override (a log
    /// line that reads other than it is), and none of a URL's delimiters.
    /// </summary>
    internal static string HostName(FieldReader r, string field, string text)
    {
        foreach (var c in text)
        {
            if (!IsHostNameCharacter(c))
            {
                throw new ProtocolException($"field '{field}' of '{r.Type}' is not a host name or address (it holds U+{(int)c:X4})", field);
            }
        }
        return text;
    }

    /// <summary>Whether <paramref name="c"/> may stand in a host name or address as <see cref="HostName"/> reads one.</summary>
    public static bool IsHostNameCharacter(char c) =>
        !(char.IsControl(c) || char.IsWhiteSpace(c) || c is '/' or '\\' or '@' or '?' or '#'
            // Format characters (bidirectional marks and overrides among them), save the two joiners IDNA allows in context.
            || (char.GetUnicodeCategory(c) == System.Globalization.UnicodeCategory.Format && c is not ('\u200C' or '\u200D')));
}
