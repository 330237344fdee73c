using System.Net;
using Daiko.Home.Control;

namespace Daiko.Fuzz;

/// <summary>
/// The PROXY protocol v2 header a load balancer puts in front of a control connection
/// (<c>home serve --proxy-protocol</c>): read from the start of the stream exactly as the listener reads
/// it, never a byte past the header it announces; what is read is encoded and parsed back to the same
/// addresses.
/// </summary>
internal static class ProxyTarget
{
    public static readonly FuzzTarget Proxy = new("proxy",
        "a PROXY protocol v2 header read from the start of a connection (bytes after it belong to TLS), re-encoded and parsed again",
        ReadHeader, e => e is ProxyProtocolException);

    private static void ReadHeader(byte[] input)
    {
        using var stream = new MemoryStream(input, writable: false);
        var header = FuzzTargets.Sync(new ValueTask<ProxyHeader>(ProxyProtocolV2.ReadAsync(stream, CancellationToken.None)));
        var announced = ProxyProtocolV2.PrefixLength + ProxyProtocolV2.BodyLength(input);
        if (stream.Position != announced) throw new FuzzFinding($"the header announced {announced} bytes but {stream.Position} were read");
        if (announced > ProxyProtocolV2.MaxHeaderLength) throw new FuzzFinding($"a header of {announced} bytes was accepted");
        foreach (var crc in new[] { false, true })
        {
            var again = ProxyProtocolV2.Parse(ProxyProtocolV2.Encode(header, crc));
            if (again != header) throw new FuzzFinding($"{header} encoded (crc32c {crc}) read back as {again}");
        }
    }

    /// <summary>Headers as HAProxy sends them, some followed by the start of a TLS ClientHello, and near misses.</summary>
    public static IEnumerable<byte[]> Seeds()
    {
        var v4 = new ProxyHeader(new IPEndPoint(IPAddress.Parse("192.0.2.7"), 50123), new IPEndPoint(IPAddress.Parse("127.0.0.1"), 7443));
        var v6 = new ProxyHeader(new IPEndPoint(IPAddress.Parse("2001:db8::7"), 50123), new IPEndPoint(IPAddress.Parse("::1"), 7443));
        byte[] clientHello = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03];
        yield return ProxyProtocolV2.Encode(v4);
        yield return ProxyProtocolV2.Encode(v6);
        yield return ProxyProtocolV2.Encode(ProxyHeader.Local);
        yield return ProxyProtocolV2.Encode(v4, crc32c: true);
        yield return ProxyProtocolV2.Encode(v6, crc32c: true);
        yield return [.. ProxyProtocolV2.Encode(v4), .. clientHello];
        // An authority TLV (type 0x02) and a no-op TLV (0x04), as HAProxy adds with send-proxy-v2 options.
        var withTlvs = ProxyProtocolV2.Encode(v4);
        byte[] tlvs = [0x02, 0x00, 0x0e, .. "market.example"u8, 0x04, 0x00, 0x02, 0x00, 0x00];
        withTlvs[15] = (byte)(12 + tlvs.Length);
        yield return [.. withTlvs, .. tlvs];
        // A UNIX-socket client (refused: no TCP address) and a v1 text header (refused).
        byte[] unix = [.. ProxyProtocolV2.Signature, 0x21, 0x31, 0x00, 0xd8, .. new byte[216]];
        yield return unix;
        yield return "PROXY TCP4 192.0.2.7 127.0.0.1 50123 7443\r\n"u8.ToArray();
    }
}
