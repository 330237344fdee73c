
namespace Daiko.Tls.Tests.Tls12;

/// <summary>
/// What each version setting puts in the one ClientHello: TLS 1.3 alone writes what the engine always
/// wrote (the RFC 8448 replays depend on it); TLS 1.2 adds its suites and extensions and nothing else.
/// </summary>
public sealed class ClientHelloOfferTests
{
    /// <summary>Runs a handshake against a transport that answers nothing and returns the ClientHello record's body.</summary>
    private static async Task<byte[]> ClientHelloAsync(TlsVersions versions, string serverName = "example.test")
    {
        var transport = new SilentTransport();
        var options = new TlsClientOptions { ServerName = serverName, Versions = versions, InsecureSkipValidation = true, HandshakeTimeout = TimeSpan.FromSeconds(5) };
        await Assert.ThrowsAsync<TlsException>(() => TlsClient.ConnectAsync(transport, options, CancellationToken.None));
        var written = transport.Written;
        var length = (written[3] << 8) | written[4];
        return written[5..(5 + length)];
    }

    private static (ushort[] Suites, ushort[] Extensions, byte[] SessionId, byte[]? SupportedVersions) Parse(byte[] hello)
    {
        var p = 4 + 2 + 32;
        var sessionId = hello[(p + 1)..(p + 1 + hello[p])];
        p += 1 + hello[p];
        var suitesLength = (hello[p] << 8) | hello[p + 1];
        var suites = Enumerable.Range(0, suitesLength / 2).Select(i => (ushort)((hello[p + 2 + 2 * i] << 8) | hello[p + 3 + 2 * i])).ToArray();
        p += 2 + suitesLength;
        p += 1 + hello[p];
        var end = p + 2 + ((hello[p] << 8) | hello[p + 1]);
        p += 2;
        var extensions = new List<ushort>();
        byte[]? versions = null;
        while (p < end)
        {
            var type = (ushort)((hello[p] << 8) | hello[p + 1]);
            var length = (hello[p + 2] << 8) | hello[p + 3];
            if (type == 43) versions = hello[(p + 5)..(p + 4 + length)];
            extensions.Add(type);
            p += 4 + length;
        }
        return (suites, extensions.ToArray(), sessionId, versions);
    }

    [Theory]
    [InlineData(TlsVersions.Tls13)]
    [InlineData(TlsVersions.Both)]
    public async Task AServerNameWithATrailingDot_IsSentWithout(TlsVersions versions)
    {
        // RFC 6066 §3: the host name in server_name has no trailing dot (servers refuse or miss it).
        Assert.Equal("Shop.Example.Test", Messages.ClientHelloOffer.Parse((await ClientHelloAsync(versions, "Shop.Example.Test."))[4..]).ServerName);
        Assert.Equal("example.test", Messages.ClientHelloOffer.Parse((await ClientHelloAsync(versions))[4..]).ServerName);
    }

    [Fact]
    public async Task Tls13Only_WritesTheTls13OnlyClientHello()
    {
        var (suites, extensions, sessionId, versions) = Parse(await ClientHelloAsync(TlsVersions.Tls13));

        Assert.Equal(new ushort[] { 0x1301, 0x1302, 0x1303 }, suites);
        Assert.Equal(new ushort[] { 0, 10, 13, 43, 28, 45, 51 }, extensions);
        Assert.Empty(sessionId);
        Assert.Equal(new byte[] { 0x03, 0x04 }, versions);
    }

    [Fact]
    public async Task Both_AddsTheTls12SuitesAndExtensions_AfterTheTls13Ones()
    {
        var (suites, extensions, _, versions) = Parse(await ClientHelloAsync(TlsVersions.Both));

        Assert.Equal(new ushort[] { 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8 }, suites);
        Assert.Equal(new ushort[] { 0, 10, 13, 43, 28, 45, 51, 23, 35, 0xff01 }, extensions);
        Assert.Equal(new byte[] { 0x03, 0x04, 0x03, 0x03 }, versions);
    }

    [Fact]
    public async Task Tls12Only_OffersNoTls13AndNoKeyShare()
    {
        var (suites, extensions, _, versions) = Parse(await ClientHelloAsync(TlsVersions.Tls12));

        Assert.All(suites, s => Assert.True(s >= 0xc000, $"suite 0x{s:x4} is not a TLS 1.2 ECDHE suite"));
        Assert.Equal(new ushort[] { 0, 10, 13, 28, 23, 35, 0xff01 }, extensions);
        Assert.Null(versions);
    }

    /// <summary>Accepts writes and answers with the end of the stream.</summary>
    private sealed class SilentTransport : Stream
    {
        private readonly MemoryStream _written = new();

        public byte[] Written => _written.ToArray();

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => 0;
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => _written.Write(buffer, offset, count);
    }
}
