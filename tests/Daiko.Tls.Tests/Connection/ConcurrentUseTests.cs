using System.Buffers;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Records;
using Daiko.Tls.Tests.Rfc8448;

namespace Daiko.Tls.Tests.Connection;

/// <summary>
/// A connection used from more than one thread: a reader and a writer at once (a splice), and one of
/// them, or a third thread, disposing it. Whatever a read or write already handed to the transport
/// keeps its buffer until it ends, and nothing else may write into that buffer meanwhile: no bytes of one
/// stream may surface in another.
/// </summary>
public sealed class ConcurrentUseTests
{
    private static readonly CipherSuite Suite = CipherSuite.Aes128GcmSha256;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private readonly byte[] _serverSecret = RandomNumberGenerator.GetBytes(32);

    private TlsConnection Import(HeldTransport transport, byte[]? pendingPlaintext = null) =>
        TlsClient.Import(transport, new ExportedSession(Suite, RandomNumberGenerator.GetBytes(32), (byte[])_serverSecret.Clone(), 0, 0,
            RandomNumberGenerator.GetBytes(32), "market", null, pendingPlaintext ?? [], []));

    /// <summary>A protected record as the server sends it (its first record after the export).</summary>
    private byte[] ServerRecord(ContentType type, byte[] content)
    {
        using var protection = new RecordProtection(CipherSuiteInfo.Get(Suite), (byte[])_serverSecret.Clone());
        var output = new byte[RecordProtection.HeaderLength + RecordProtection.MaxCiphertext];
        return output[..protection.Seal(type, content, 0, output)];
    }

    /// <summary>A record header with a body that no key opens.</summary>
    private static byte[] ForgedRecord() => [0x17, 0x03, 0x03, 0x00, 0x20, .. RandomNumberGenerator.GetBytes(0x20)];

    [Fact]
    public async Task ADisposedConnection_KeepsItsBuffer_OutOfThePool_WhileAReadStillFillsIt()
    {
        var transport = new HeldTransport();
        var connection = Import(transport);
        var reading = connection.ReadAsync(new byte[64]).AsTask();
        var held = await transport.ReadHandedOver.Task.WaitAsync(Bound);
        Assert.True(MemoryMarshal.TryGetArray<byte>(held, out var segment));

        // Another thread disposes the connection while the transport is still receiving into its buffer.
        connection.Dispose();
        var others = Enumerable.Range(0, 16).Select(_ => ArrayPool<byte>.Shared.Rent(segment.Array!.Length)).ToList();
        try
        {
            foreach (var other in others) other.AsSpan().Fill(0x5A);
            transport.CompleteRead(ForgedRecord());
            await Assert.ThrowsAnyAsync<Exception>(() => reading.WaitAsync(Bound));
            Assert.All(others, other => Assert.Equal(-1, other.AsSpan().IndexOfAnyExcept((byte)0x5A)));
        }
        finally
        {
            foreach (var other in others) ArrayPool<byte>.Shared.Return(other);
        }
    }

    [Fact]
    public async Task AReadThatFails_DoesNotWriteItsAlert_OverARecordBeingWritten()
    {
        var transport = new HeldTransport { HoldNextWrite = true };
        var connection = Import(transport);
        var writing = connection.WriteAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\n\r\n")).AsTask();
        var (onTheWire, asWritten) = await transport.WriteHandedOver.Task.WaitAsync(Bound);

        var reading = connection.ReadAsync(new byte[64]).AsTask();
        await transport.ReadHandedOver.Task.WaitAsync(Bound);
        transport.CompleteRead(ForgedRecord());
        await Assert.ThrowsAsync<TlsException>(() => reading.WaitAsync(Bound));

        Assert.Equal(asWritten, onTheWire.ToArray());
        transport.CompleteWrite();
        await writing.WaitAsync(Bound);
    }

    [Fact]
    public async Task WaitingForATicket_KeepsUndeliveredData_Once()
    {
        var transport = new HeldTransport();
        // NewSessionTicket: lifetime 3600, age_add, nonce <1>, ticket <2>, no extensions.
        byte[] body = [0, 0, 0x0e, 0x10, 1, 2, 3, 4, 1, 0, 0, 4, 9, 8, 7, 6, 0, 0];
        transport.Incoming.Enqueue(ServerRecord(ContentType.Handshake, [(byte)HandshakeType.NewSessionTicket, 0, 0, (byte)body.Length, .. body]));
        using var connection = Import(transport, Encoding.ASCII.GetBytes("hello"));

        var ticket = await connection.WaitForTicketAsync(Bound, CancellationToken.None);

        Assert.NotNull(ticket);
        var buffer = new byte[64];
        var n = await connection.ReadAsync(buffer).AsTask().WaitAsync(Bound);
        Assert.Equal("hello", Encoding.ASCII.GetString(buffer, 0, n));
    }

    /// <summary>
    /// A transport whose next read (when nothing is queued) and, if asked, next write stay in progress
    /// until the test completes them, and keep their buffer meanwhile whatever happens to the connection
    /// (as a socket's receive already under way does).
    /// </summary>
    private sealed class HeldTransport : DuplexTestStream
    {
        private Memory<byte> _readBuffer;
        private TaskCompletionSource<int>? _read;
        private TaskCompletionSource? _write;

        public Queue<byte[]> Incoming { get; } = new();

        public bool HoldNextWrite { get; set; }

        public TaskCompletionSource<Memory<byte>> ReadHandedOver { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource<(ReadOnlyMemory<byte> Buffer, byte[] AsWritten)> WriteHandedOver { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (Incoming.TryDequeue(out var queued))
            {
                queued.CopyTo(buffer);
                return ValueTask.FromResult(queued.Length);
            }
            _readBuffer = buffer;
            _read = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            ReadHandedOver.TrySetResult(buffer);
            return new ValueTask<int>(_read.Task);
        }

        public void CompleteRead(byte[] bytes)
        {
            bytes.CopyTo(_readBuffer);
            _read!.SetResult(bytes.Length);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (!HoldNextWrite) return ValueTask.CompletedTask;
            HoldNextWrite = false;
            _write = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            WriteHandedOver.TrySetResult((buffer, buffer.ToArray()));
            return new ValueTask(_write.Task);
        }

        public void CompleteWrite() => _write!.SetResult();
    }
}
