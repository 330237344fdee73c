using Daiko.Home.Control;
using Daiko.Home.Handlers;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Control;

/// <summary>
/// What a reply that carries tickets leaves behind depends on how far its write got: nothing written gives the
/// tickets' places back; a write that began and failed (a reply larger than a TLS record goes out record by record,
/// so the device may hold part of it) keeps them counted; a written one runs what follows the reply.
/// </summary>
public sealed class ReplyOutcomeTests
{
    private static readonly ControlRequest Request = new(7, new CardStatusRequest());

    private static readonly ControlMessage LargeReply = new ErrorReply(ErrorCode.Unavailable, new string('x', 40_000));

    [Fact]
    public async Task AWriteThatFailsPartWay_RunsMaybeSent_NotAbandoned_NorAfterReply()
    {
        var wire = new FailsAfterPartStream(new MemoryStream());
        await using var connection = new ControlConnection(wire);
        var ran = new List<string>();

        await Assert.ThrowsAsync<ControlErrorException>(() => RequestDispatcher.SendReplyAsync(connection, Request,
            new HandlerResult(LargeReply, () => ran.Add("after"), () => ran.Add("abandoned"), () => ran.Add("maybe-sent"))));

        Assert.True(wire.BytesWritten > 0, "part of the reply reached the wire before the failure");
        Assert.Equal(["maybe-sent"], ran);
    }

    [Fact]
    public async Task AWriteThatFailsPartWay_WithNothingToKeep_RunsAbandoned()
    {
        await using var connection = new ControlConnection(new FailsAfterPartStream(new MemoryStream()));
        var ran = new List<string>();

        await Assert.ThrowsAsync<ControlErrorException>(() => RequestDispatcher.SendReplyAsync(connection, Request,
            new HandlerResult(LargeReply, () => ran.Add("after"), () => ran.Add("abandoned"))));

        Assert.Equal(["abandoned"], ran);
    }

    [Fact]
    public async Task AChannelClosedBeforeTheReplysTurn_WritesNothing_AndRunsAbandoned()
    {
        var wire = new FailsAfterPartStream(new MemoryStream());
        await using var connection = new ControlConnection(wire);
        connection.Close("the test closed it");
        var ran = new List<string>();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => RequestDispatcher.SendReplyAsync(connection, Request,
            new HandlerResult(LargeReply, () => ran.Add("after"), () => ran.Add("abandoned"), () => ran.Add("maybe-sent"))));

        Assert.Equal(0, wire.BytesWritten);
        Assert.Equal(["abandoned"], ran);
    }

    [Fact]
    public async Task AWrittenReply_RunsAfterReply_Only()
    {
        var sink = new MemoryStream();
        await using var connection = new ControlConnection(sink);
        var ran = new List<string>();

        await RequestDispatcher.SendReplyAsync(connection, Request,
            new HandlerResult(LargeReply, () => ran.Add("after"), () => ran.Add("abandoned"), () => ran.Add("maybe-sent")));

        Assert.True(sink.Length > 40_000);
        Assert.Equal(["after"], ran);
    }

    /// <summary>Takes the first 16 KiB written (a TLS record's worth), then fails as a reset connection does.</summary>
    private sealed class FailsAfterPartStream(Stream inner) : PassThroughStream(inner)
    {
        private const int Taken = 16_384;

        public long BytesWritten { get; private set; }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var room = (int)Math.Max(0, Taken - BytesWritten);
            var part = Math.Min(room, buffer.Length);
            await Inner.WriteAsync(buffer[..part], cancellationToken);
            BytesWritten += part;
            if (part < buffer.Length) throw new IOException("Connection reset by peer");
        }
    }
}
