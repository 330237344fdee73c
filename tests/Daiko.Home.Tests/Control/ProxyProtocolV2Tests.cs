using System.Net;
using Xunit;
using Daiko.Fuzz;
using Daiko.Home.Control;

namespace Daiko.Home.Tests.Control;

/// <summary>The PROXY protocol v2 reader: what HAProxy sends is read exactly, and everything else is refused by name.</summary>
public sealed class ProxyProtocolV2Tests
{
    private static readonly ProxyHeader V4 = new(new IPEndPoint(IPAddress.Parse("192.0.2.7"), 50123), new IPEndPoint(IPAddress.Parse("127.0.0.1"), 7443));
    private static readonly ProxyHeader V6 = new(new IPEndPoint(IPAddress.Parse("2001:db8::7"), 443), new IPEndPoint(IPAddress.Parse("::1"), 7443));

    private static async Task<ProxyHeader> ReadAsync(byte[] bytes) => await ProxyProtocolV2.ReadAsync(new MemoryStream(bytes), CancellationToken.None);

    private static async Task<string> RefusedAsync(byte[] bytes) => (await Assert.ThrowsAsync<ProxyProtocolException>(() => ReadAsync(bytes))).Message;

    [Fact]
    public async Task TheClientOfATcpHeader_IsRead_AndNotAByteOfWhatFollows()
    {
        byte[] clientHello = [0x16, 0x03, 0x01, 0x00, 0x05];
        foreach (var sent in new[] { V4, V6 })
        {
            foreach (var crc in new[] { false, true })
            {
                var header = ProxyProtocolV2.Encode(sent, crc);
                using var stream = new MemoryStream([.. header, .. clientHello]);

                var read = await ProxyProtocolV2.ReadAsync(stream, CancellationToken.None);

                Assert.Equal(sent, read);
                Assert.Equal(header.Length, stream.Position);
            }
        }
    }

    [Fact]
    public async Task ALocalHeader_NamesNoClient()
    {
        Assert.True((await ReadAsync(ProxyProtocolV2.Encode(ProxyHeader.Local))).IsLocal);
    }

    [Fact]
    public async Task TlvsAreSkipped_WhenWellFormed()
    {
        var header = ProxyProtocolV2.Encode(V4);
        byte[] authority = [0x02, 0x00, 0x03, .. "abc"u8];
        header[15] += (byte)authority.Length;

        Assert.Equal(V4, await ReadAsync([.. header, .. authority]));
    }

    [Fact]
    public async Task ATlsClientHello_AV1Header_AndAWrongVersionOrCommand_AreRefused()
    {
        Assert.Contains("did not begin with a PROXY protocol v2 header", await RefusedAsync([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0, 0]));
        Assert.Contains("v1 (text)", await RefusedAsync("PROXY TCP4 192.0.2.7 127.0.0.1 50123 7443\r\n"u8.ToArray()));
        var version1 = ProxyProtocolV2.Encode(V4);
        version1[12] = 0x11;
        Assert.Contains("version 1", await RefusedAsync(version1));
        var command2 = ProxyProtocolV2.Encode(V4);
        command2[12] = 0x22;
        Assert.Contains("neither LOCAL nor PROXY", await RefusedAsync(command2));
    }

    [Fact]
    public async Task AHeaderOverTheLimit_IsRefusedFromItsPrefix_BeforeItsBodyIsRead()
    {
        var prefix = ProxyProtocolV2.Encode(V4)[..ProxyProtocolV2.PrefixLength];
        prefix[14] = 0x04;
        prefix[15] = 0x01;

        Assert.Contains("over the limit of 1040", await RefusedAsync(prefix));
    }

    [Fact]
    public async Task AHeaderCutShort_OrAddressesCutShort_OrATlvRunningPastTheEnd_IsRefused()
    {
        var whole = ProxyProtocolV2.Encode(V4);
        Assert.Contains("ended inside", await RefusedAsync(whole[..20]));
        Assert.Contains("ended inside", await RefusedAsync(whole[..10]));
        var shortAddresses = whole[..24];
        shortAddresses[15] = 8;
        Assert.Contains("too short for its addresses", await RefusedAsync(shortAddresses));
        byte[] tlv = [0x02, 0x00, 0x09, .. "abc"u8];
        var longTlv = ProxyProtocolV2.Encode(V4);
        longTlv[15] += (byte)tlv.Length;
        Assert.Contains("runs past the header", await RefusedAsync([.. longTlv, .. tlv]));
    }

    [Fact]
    public async Task AWrongCrc32c_IsRefused()
    {
        var header = ProxyProtocolV2.Encode(V4, crc32c: true);
        header[^1] ^= 1;

        Assert.Contains("CRC32c does not match", await RefusedAsync(header));
    }

    [Fact]
    public async Task AClientThatIsNotTcp_IsRefused_ButLocalMayBeAnyFamily()
    {
        var udp = ProxyProtocolV2.Encode(V4);
        udp[13] = 0x12;
        Assert.Contains("names no TCP client", await RefusedAsync(udp));
        byte[] unix = [.. ProxyProtocolV2.Signature, 0x21, 0x31, 0x00, 0xd8, .. new byte[216]];
        Assert.Contains("names no TCP client", await RefusedAsync(unix));
        unix[12] = 0x20;
        Assert.True((await ReadAsync(unix)).IsLocal);
        var unknownFamily = ProxyProtocolV2.Encode(V4);
        unknownFamily[13] = 0x41;
        Assert.Contains("family 4 is unknown", await RefusedAsync(unknownFamily));
    }

    [Fact]
    public void EveryCorpusInput_IsAcceptedOrRefusedCleanly()
    {
        var report = CorpusReplay.Run("proxy");

        Assert.True(report.Inputs >= 5 && report.Accepted > 0 && report.Refused > 0, report.ToString());
    }
}
