namespace Daiko.Tls;

/// <summary>Handing a <see cref="TlsConnection"/>'s record layer over to another process.</summary>
public sealed partial class TlsConnection
{
    /// <summary>
    /// Hands over the record layer: secrets, sequence numbers, undelivered plaintext and unprocessed
    /// transport bytes. This connection cannot be used afterwards; its transport stays open for the
    /// caller (who splices it to whoever imports the session).
    /// </summary>
    public ExportedSession Export()
    {
        if (!_readLock.Wait(0)) throw new InvalidOperationException("cannot export while a read is in progress");
        if (!_writeLock.Wait(0))
        {
            _readLock.Release();
            throw new InvalidOperationException("cannot export while a write is in progress");
        }
        try
        {
            using var hold = Hold();
            if (_records.HasBufferedHandshake) throw new InvalidOperationException("cannot export in the middle of a fragmented handshake message");
            if (_records.HasPendingWrites) throw new InvalidOperationException("cannot export with records not yet written");
            // The importer writes next: the KeyUpdate the server asked for must precede that data.
            if (_keyUpdateOwed) AnswerKeyUpdateIfOwedAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
            var read = _records.ReadProtection!;
            var write = _records.WriteProtection!;
            var session = Version == TlsVersions.Tls12 ? Export12(read, write) : new ExportedSession(_suite.Suite, (byte[])write.TrafficSecret.Clone(), (byte[])read.TrafficSecret.Clone(),
                write.Sequence, read.Sequence, (byte[])_resumptionMasterSecret.Clone(), ServerName, ApplicationProtocol,
                UnreadPlaintext.ToArray(), _records.UnprocessedTransportBytes.ToArray());
            _exported = true;
            Retire(disposeTransport: false);
            return session;
        }
        finally
        {
            _writeLock.Release();
            _readLock.Release();
        }
    }

    /// <summary>The transport this connection runs over (for splicing after <see cref="Export"/>).</summary>
    public Stream Transport => _records.Transport;
}
