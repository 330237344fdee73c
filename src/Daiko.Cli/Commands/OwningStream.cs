namespace Daiko.Cli.Commands;

/// <summary>
/// A session stream that also closes the control connection it came from; <paramref name="closing"/>
/// runs between the two (the session is over, its control connection still open: --stats asks the agent then).
/// </summary>
internal sealed class OwningStream(Stream inner, IAsyncDisposable owner, Func<Task>? closing = null) : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        try
        {
            if (closing is not null) await closing();
        }
        catch (Exception e) when (e is Daiko.Protocol.ControlErrorException or IOException or OperationCanceledException)
        {
            // The agent went away before it could report this connection's cost: the connection itself is done.
        }
        await owner.DisposeAsync();
        await base.DisposeAsync();
    }
}
