using System.Security.Cryptography;

namespace Daiko.Tls;

/// <summary>
/// When a <see cref="TlsConnection"/>'s record layer is let go. Its input and output buffers come from
/// the shared array pool, and a read may still be filling the input from the transport, or decrypting
/// in it, or a write still sending from the output, when another thread disposes the connection (a
/// splice whose other side ended first). Were the buffers returned then, the pool would hand them to
/// another stream (another connection's, or a TLS server stream's decrypted data) while still in use:
/// that stream would read bytes it never received, with every record's integrity intact, or the write
/// would put on the wire whatever the next holder wrote there. So each read and write holds the record
/// layer while it runs, disposal closes the transport first (ending whatever waits on it), and the
/// buffers go back to the pool, the keys and the secrets wiped, only when the last holder lets go.
/// </summary>
public sealed partial class TlsConnection
{
    // The connection's own hold, and one more for each read or write running; 0: let go.
    private int _holds = 1;
    private int _retired;

    /// <summary>The record layer for one read or write (under its lock); throws if the connection failed, was exported or was disposed.</summary>
    private RecordHold Hold()
    {
        ThrowIfUnusable();
        var holds = Volatile.Read(ref _holds);
        while (true)
        {
            if (holds == 0 || Volatile.Read(ref _retired) != 0) throw new ObjectDisposedException(nameof(TlsConnection), "the connection was closed");
            var seen = Interlocked.CompareExchange(ref _holds, holds + 1, holds);
            if (seen == holds) return new RecordHold(this);
            holds = seen;
        }
    }

    private void LetGo()
    {
        if (Interlocked.Decrement(ref _holds) != 0) return;
        _records.Dispose();
        CryptographicOperations.ZeroMemory(_resumptionMasterSecret);
        CryptographicOperations.ZeroMemory(_plaintext);
    }

    /// <summary>
    /// No new read or write starts; the transport is closed (unless it was handed over with an export)
    /// so that one waiting on it ends, and the record layer is let go when the last one has.
    /// </summary>
    private void Retire(bool disposeTransport)
    {
        if (Interlocked.Exchange(ref _retired, 1) != 0) return;
        if (disposeTransport) _records.Transport.Dispose();
        LetGo();
    }

    private readonly struct RecordHold(TlsConnection connection) : IDisposable
    {
        public void Dispose() => connection.LetGo();
    }
}
