using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Control;

/// <summary>
/// A control connection is shared by every request and relay: a write whose caller gives up (a relay
/// being torn down) must not leave half a frame, or a used TLS sequence number, on the wire.
/// </summary>
public sealed class ControlConnectionCancelledWriteTests
{
    [Fact]
    public async Task CancellingASendMidWrite_LeavesTheChannelUsableForTheNextFrame()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        using var accepted = await listener.AcceptTcpClientAsync();

        var received = Channel.CreateUnbounded<ControlMessage>();
        await using var receiver = new ControlConnection(accepted.GetStream(), (r, _) => received.Writer.WriteAsync(r.Message).AsTask());
        receiver.Start();

        using var giveUp = new CancellationTokenSource();
        // The cancellation arrives while the frame is half written (as a relay's teardown can).
        var wire = new CancelMidWriteStream(client.GetStream(), giveUp);
        await using var sender = new ControlConnection(wire);
        sender.Start();

        try { await sender.SendAsync(3, new SignRequest(SignatureScheme.EcdsaSecp256r1Sha256, new byte[4096]), giveUp.Token); }
        catch (OperationCanceledException) { }
        await sender.SendAsync(5, new SignRequest(SignatureScheme.EcdsaSecp256r1Sha256, new byte[16]), CancellationToken.None);

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var lengths = new List<int>();
        while (lengths.Count < 2) lengths.Add(((SignRequest)await received.Reader.ReadAsync(deadline.Token)).Content.Length);
        Assert.Equal([4096, 16], lengths);
        Assert.Null(receiver.CloseReason);
    }

    /// <summary>Writes half of each buffer, then the cancellation arrives, then honours the token it was given.</summary>
    private sealed class CancelMidWriteStream(Stream inner, CancellationTokenSource arriving) : PassThroughStream(inner)
    {
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var half = buffer.Length / 2;
            await Inner.WriteAsync(buffer[..half], CancellationToken.None);
            if (!arriving.IsCancellationRequested) await arriving.CancelAsync();
            cancellationToken.ThrowIfCancellationRequested();
            await Inner.WriteAsync(buffer[half..], CancellationToken.None);
        }
    }
}
