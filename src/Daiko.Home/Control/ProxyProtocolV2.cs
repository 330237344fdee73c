using System.Buffers.Binary;
using System.Net;
using System.Numerics;

namespace Daiko.Home.Control;

/// <summary>
/// What a PROXY protocol v2 header says about a connection a load balancer forwards: the client's
/// address and the address it connected to, or nothing for a LOCAL connection (the balancer's own, such
/// as a health check), which stands for itself.
/// </summary>
public sealed record ProxyHeader(IPEndPoint? Source, IPEndPoint? Destination)
{
    /// <summary>The balancer's own connection (command LOCAL): the connection's own addresses apply.</summary>
    public static readonly ProxyHeader Local = new(null, null);

    public bool IsLocal => Source is null;
}

/// <summary>A PROXY protocol v2 header that is missing, malformed, too large or names no TCP client.</summary>
public sealed class ProxyProtocolException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The binary PROXY protocol, version 2 (HAProxy's <c>send-proxy-v2</c>): a 16-byte prefix (signature,
/// version and command, address family and transport, length), then the addresses and optional TLVs.
/// Only what a TCP listener can attribute is accepted: command PROXY over TCP/IPv4 or TCP/IPv6, or
/// command LOCAL (any family; its addresses are ignored). TLVs must be well formed and are otherwise
/// skipped, except a CRC32c TLV, which must match. The whole header is at most
/// <see cref="MaxHeaderLength"/> bytes, and <see cref="ReadAsync"/> reads exactly the header, never a
/// byte of what follows it.
/// </summary>
public static class ProxyProtocolV2
{
    /// <summary>The fixed part: signature (12), version and command, family and transport, length (2).</summary>
    public const int PrefixLength = 16;

    /// <summary>The bound on addresses and TLVs after the prefix.</summary>
    public const int MaxBodyLength = 1024;

    public const int MaxHeaderLength = PrefixLength + MaxBodyLength;

    private const byte CommandLocal = 0x20, CommandProxy = 0x21;
    private const byte TcpOverIPv4 = 0x11, TcpOverIPv6 = 0x21;
    private const byte TlvCrc32c = 0x03;
    private const int IPv4Addresses = 12, IPv6Addresses = 36, UnixAddresses = 216;

    /// <summary>The 12 bytes every v2 header starts with.</summary>
    public static ReadOnlySpan<byte> Signature => [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    /// <summary>
    /// Reads one header from the start of <paramref name="stream"/>: the prefix, then exactly the length
    /// it announces (within <see cref="MaxBodyLength"/>). A connection that ends first is refused.
    /// </summary>
    public static async Task<ProxyHeader> ReadAsync(Stream stream, CancellationToken ct)
    {
        var header = new byte[MaxHeaderLength];
        try
        {
            await stream.ReadExactlyAsync(header.AsMemory(0, PrefixLength), ct);
            var body = BodyLength(header.AsSpan(0, PrefixLength));
            await stream.ReadExactlyAsync(header.AsMemory(PrefixLength, body), ct);
            return Parse(header.AsSpan(0, PrefixLength + body));
        }
        catch (EndOfStreamException e)
        {
            throw new ProxyProtocolException("the connection ended inside its PROXY protocol header", e);
        }
    }

    /// <summary>Checks the 16-byte prefix and returns how many bytes of addresses and TLVs follow it.</summary>
    public static int BodyLength(ReadOnlySpan<byte> prefix)
    {
        if (prefix.Length < PrefixLength) throw new ProxyProtocolException($"a PROXY protocol v2 header is at least {PrefixLength} bytes");
        if (!prefix[..Signature.Length].SequenceEqual(Signature))
        {
            throw new ProxyProtocolException(prefix.StartsWith("PROXY "u8)
                ? "a PROXY protocol v1 (text) header: only version 2 (binary, HAProxy's send-proxy-v2) is accepted"
                : "the connection did not begin with a PROXY protocol v2 header");
        }
        if (prefix[12] >> 4 != 2) throw new ProxyProtocolException($"PROXY protocol version {prefix[12] >> 4}: only version 2 is accepted");
        if (prefix[12] is not (CommandLocal or CommandProxy)) throw new ProxyProtocolException($"PROXY protocol command {prefix[12] & 0x0F} is neither LOCAL nor PROXY");
        var length = BinaryPrimitives.ReadUInt16BigEndian(prefix[14..16]);
        if (length > MaxBodyLength) throw new ProxyProtocolException($"a PROXY protocol header of {PrefixLength + length} bytes is over the limit of {MaxHeaderLength}");
        return length;
    }

    /// <summary>Parses one whole header (prefix, addresses and TLVs, nothing after).</summary>
    public static ProxyHeader Parse(ReadOnlySpan<byte> header)
    {
        var length = BodyLength(header);
        if (header.Length != PrefixLength + length) throw new ProxyProtocolException($"the PROXY protocol header announces {length} bytes after its prefix, not {header.Length - PrefixLength}");
        var family = header[13];
        var body = header[PrefixLength..];
        var addresses = (family >> 4) switch
        {
            0 => 0,
            1 => IPv4Addresses,
            2 => IPv6Addresses,
            3 => UnixAddresses,
            _ => throw new ProxyProtocolException($"PROXY protocol address family {family >> 4} is unknown"),
        };
        if ((family & 0x0F) > 2) throw new ProxyProtocolException($"PROXY protocol transport {family & 0x0F} is unknown");
        if (body.Length < addresses) throw new ProxyProtocolException($"the PROXY protocol header is {body.Length} bytes after its prefix, too short for its addresses ({addresses})");
        CheckTlvs(header, PrefixLength + addresses);
        if (header[12] == CommandLocal) return ProxyHeader.Local;
        return family switch
        {
            TcpOverIPv4 => new ProxyHeader(
                new IPEndPoint(new IPAddress(body[..4]), BinaryPrimitives.ReadUInt16BigEndian(body[8..10])),
                new IPEndPoint(new IPAddress(body[4..8]), BinaryPrimitives.ReadUInt16BigEndian(body[10..12]))),
            TcpOverIPv6 => new ProxyHeader(
                new IPEndPoint(new IPAddress(body[..16]), BinaryPrimitives.ReadUInt16BigEndian(body[32..34])),
                new IPEndPoint(new IPAddress(body[16..32]), BinaryPrimitives.ReadUInt16BigEndian(body[34..36]))),
            _ => throw new ProxyProtocolException($"the PROXY protocol header names no TCP client (family and transport 0x{family:x2}): only TCP over IPv4 or IPv6 is accepted"),
        };
    }

    /// <summary>Encodes a header (LOCAL for <see cref="ProxyHeader.Local"/>), with a CRC32c TLV when asked: what a load balancer sends.</summary>
    public static byte[] Encode(ProxyHeader header, bool crc32c = false)
    {
        var v4 = header.Source?.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork;
        var addresses = header.IsLocal ? 0 : v4 ? IPv4Addresses : IPv6Addresses;
        var bytes = new byte[PrefixLength + addresses + (crc32c ? 7 : 0)];
        Signature.CopyTo(bytes);
        bytes[12] = header.IsLocal ? CommandLocal : CommandProxy;
        bytes[13] = header.IsLocal ? (byte)0 : v4 ? TcpOverIPv4 : TcpOverIPv6;
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(14), (ushort)(bytes.Length - PrefixLength));
        if (!header.IsLocal)
        {
            var destination = header.Destination ?? new IPEndPoint(v4 ? IPAddress.Any : IPAddress.IPv6Any, 0);
            var size = v4 ? 4 : 16;
            var body = bytes.AsSpan(PrefixLength);
            if (!header.Source!.Address.TryWriteBytes(body[..size], out _) || !destination.Address.TryWriteBytes(body[size..(2 * size)], out _))
            {
                throw new ArgumentException("the source and destination of a PROXY header are of one address family", nameof(header));
            }
            BinaryPrimitives.WriteUInt16BigEndian(body[(2 * size)..], (ushort)header.Source.Port);
            BinaryPrimitives.WriteUInt16BigEndian(body[(2 * size + 2)..], (ushort)destination.Port);
        }
        if (crc32c)
        {
            var tlv = bytes.AsSpan(PrefixLength + addresses);
            tlv[0] = TlvCrc32c;
            BinaryPrimitives.WriteUInt16BigEndian(tlv[1..], 4);
            BinaryPrimitives.WriteUInt32BigEndian(tlv[3..], Crc32c(bytes));
        }
        return bytes;
    }

    /// <summary>Walks the TLVs from <paramref name="offset"/>: each must fit, and a CRC32c must match the header.</summary>
    private static void CheckTlvs(ReadOnlySpan<byte> header, int offset)
    {
        while (offset < header.Length)
        {
            if (header.Length - offset < 3) throw new ProxyProtocolException("a PROXY protocol TLV is cut short");
            var type = header[offset];
            var length = BinaryPrimitives.ReadUInt16BigEndian(header[(offset + 1)..]);
            var value = offset + 3;
            if (length > header.Length - value) throw new ProxyProtocolException($"a PROXY protocol TLV (type 0x{type:x2}) of {length} bytes runs past the header");
            if (type == TlvCrc32c)
            {
                if (length != 4) throw new ProxyProtocolException($"a PROXY protocol CRC32c TLV is 4 bytes, not {length}");
                var copy = header.ToArray();
                copy.AsSpan(value, 4).Clear();
                if (Crc32c(copy) != BinaryPrimitives.ReadUInt32BigEndian(header[value..])) throw new ProxyProtocolException("the PROXY protocol header's CRC32c does not match");
            }
            offset = value + length;
        }
    }

    /// <summary>CRC-32C (Castagnoli) as the PROXY protocol specifies it.</summary>
    private static uint Crc32c(ReadOnlySpan<byte> bytes)
    {
        var crc = uint.MaxValue;
        foreach (var b in bytes) crc = BitOperations.Crc32C(crc, b);
        return ~crc;
    }
}
