using System.Security.Cryptography;
using System.Threading.Channels;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;

namespace Daiko.Tls;

/// <summary>
/// An established TLS 1.3 connection, usable as a <see cref="Stream"/>. Handles post-handshake
/// messages itself (NewSessionTicket, KeyUpdate, alerts). A connection that failed is broken for good;
/// one that was exported can no longer be used here.
/// </summary>
public sealed partial class TlsConnection : Stream
{
    private readonly RecordLayer _records;
    private readonly TlsClientOptions _options;
    private readonly CipherSuiteInfo _suite;
    private readonly byte[] _resumptionMasterSecret;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly SemaphoreSlim _readLock = new(1, 1);
    private readonly List<SessionTicket> _tickets = new();
    private readonly Channel<SessionTicket> _newTickets = Channel.CreateUnbounded<SessionTicket>();
    private byte[] _plaintext = [];
    private int _plaintextStart;
    private bool _receivedCloseNotify;
    private bool _sentCloseNotify;
    private Exception? _broken;
    private bool _exported;

    internal TlsConnection(RecordLayer records, TlsClientOptions options, CipherSuiteInfo suite, NamedGroup? group, PskKeyExchangeMode? keyExchange,
        string? alpn, bool earlyDataAccepted, IReadOnlyList<byte[]> serverChain, byte[] resumptionMasterSecret, string? serverName = null, TlsVersions version = TlsVersions.Tls13)
    {
        Version = version;
        _records = records;
        _options = options;
        _suite = suite;
        Group = group;
        KeyExchange = keyExchange;
        ApplicationProtocol = alpn;
        EarlyDataAccepted = earlyDataAccepted;
        ServerCertificateChain = serverChain;
        _resumptionMasterSecret = resumptionMasterSecret;
        ServerName = serverName ?? options.ServerName;
    }

    public CipherSuite CipherSuite => _suite.Suite;

    public NamedGroup? Group { get; }

    /// <summary>psk_ke or psk_dhe_ke for a resumed connection; null for a full handshake.</summary>
    public PskKeyExchangeMode? KeyExchange { get; }

    public bool Resumed => KeyExchange is not null;

    public string? ApplicationProtocol { get; }

    public string? ServerName { get; }

    public bool EarlyDataAccepted { get; }

    /// <summary>The server's chain (empty for a resumed or imported connection).</summary>
    public IReadOnlyList<byte[]> ServerCertificateChain { get; }

    /// <summary>Every ticket received so far.</summary>
    public IReadOnlyList<SessionTicket> Tickets
    {
        get { lock (_tickets) return _tickets.ToArray(); }
    }

    public TlsCounters? Counters => _options.Counters;

    /// <summary>The server closed before the client's Finished: reading what it sent still works, writing does not.</summary>
    internal void MarkPeerClosedWrites() => _sentCloseNotify = true;

    internal void AddPendingPlaintext(byte[] bytes)
    {
        if (bytes.Length == 0) return;
        _plaintext = bytes;
        _plaintextStart = 0;
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush() { }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _readLock.WaitAsync(cancellationToken);
        try
        {
            while (true)
            {
                ThrowIfUnusable();
                if (_plaintextStart < _plaintext.Length)
                {
                    var n = Math.Min(buffer.Length, _plaintext.Length - _plaintextStart);
                    _plaintext.AsSpan(_plaintextStart, n).CopyTo(buffer.Span);
                    _plaintextStart += n;
                    return n;
                }
                if (_receivedCloseNotify || buffer.IsEmpty) return 0;
                if (!await ReadOneRecordAsync(cancellationToken)) return 0;
            }
        }
        finally
        {
            _readLock.Release();
        }
    }

    /// <summary>Processes one record; returns false at the end of the stream.</summary>
    private async ValueTask<bool> ReadOneRecordAsync(CancellationToken cancellationToken)
    {
        try
        {
            var record = await _records.ReadRecordAsync(cancellationToken);
            if (record is null)
            {
                // The transport ended without close_notify: report the end, the data seen is all there is.
                _receivedCloseNotify = true;
                return false;
            }
            var (type, content) = record.Value;
            switch (type)
            {
                case ContentType.ApplicationData:
                    if (_records.HasBufferedHandshake) throw TlsException.Unexpected("application data inside a fragmented handshake message");
                    _plaintext = content.ToArray();
                    _plaintextStart = 0;
                    return true;
                case ContentType.Handshake:
                    _records.AddHandshakeData(content.Span);
                    while (_records.TryDequeueHandshake(out var message))
                    {
                        await HandlePostHandshakeAsync(message, cancellationToken);
                    }
                    return true;
                case ContentType.Alert:
                    if (content.Length == 2 && content.Span[1] == (byte)AlertDescription.CloseNotify)
                    {
                        _receivedCloseNotify = true;
                        return false;
                    }
                    throw RecordLayer.AlertReceived(content.Span);
                default:
                    throw TlsException.Unexpected($"{type} record after the handshake");
            }
        }
        catch (TlsException e)
        {
            await BreakAsync(e);
            throw;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            var wrapped = new TlsException(TlsError.TransportClosed, AlertDescription.InternalError, $"the transport failed: {e.Message}", e);
            _broken = wrapped;
            throw wrapped;
        }
    }

    private async ValueTask HandlePostHandshakeAsync(Records.HandshakeMessage message, CancellationToken cancellationToken)
    {
        if (Version == TlsVersions.Tls12) throw RefusePostHandshake12(message);
        switch (message.Type)
        {
            case HandshakeType.NewSessionTicket:
            {
                var nst = NewSessionTicket.Parse(message.Body);
                var psk = TrafficSecrets.TicketPsk(_suite, _resumptionMasterSecret, nst.Nonce);
                var ticket = new SessionTicket(nst.Ticket, psk, _suite.Suite, ServerName, ApplicationProtocol,
                    nst.Lifetime, nst.AgeAdd, nst.MaxEarlyData, _options.Time.GetUtcNow(), nst.Nonce);
                lock (_tickets) _tickets.Add(ticket);
                _newTickets.Writer.TryWrite(ticket);
                break;
            }
            case HandshakeType.KeyUpdate:
            {
                var requested = SimpleMessages.ParseKeyUpdate(message.Body);
                var read = _records.ReadProtection!;
                _records.SetReadProtection(new RecordProtection(_suite, TrafficSecrets.Update(_suite, read.TrafficSecret)));
                if (requested)
                {
                    await SendKeyUpdateAsync(false, cancellationToken);
                }
                break;
            }
            default:
                throw TlsException.Unexpected($"{message.Type} after the handshake");
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            ThrowIfUnusable();
            if (_sentCloseNotify) throw new TlsException(TlsError.ConnectionUnusable, AlertDescription.InternalError, "the connection was closed for writing");
            await _records.WriteAsync(ContentType.ApplicationData, buffer, cancellationToken);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            var wrapped = new TlsException(TlsError.TransportClosed, AlertDescription.InternalError, $"the transport failed: {e.Message}", e);
            _broken = wrapped;
            throw wrapped;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Waits up to <paramref name="timeout"/> for a ticket not yet returned by this method. Application
    /// data arriving meanwhile is kept for <see cref="ReadAsync(Memory{byte}, CancellationToken)"/>.
    /// </summary>
    public async ValueTask<SessionTicket?> WaitForTicketAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_newTickets.Reader.TryRead(out var ready)) return ready;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            await _readLock.WaitAsync(cts.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
        try
        {
            while (!_newTickets.Reader.TryRead(out ready))
            {
                ThrowIfUnusable();
                if (_receivedCloseNotify) return null;
                var pending = _plaintextStart < _plaintext.Length ? _plaintext.AsSpan(_plaintextStart).ToArray() : [];
                bool more;
                try
                {
                    more = await ReadOneRecordAsync(cts.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    return null;
                }
                catch (TlsException e) when (e.InnerException is OperationCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    return null;
                }
                if (pending.Length > 0)
                {
                    _plaintext = [.. pending, .. _plaintext.AsSpan(_plaintextStart)];
                    _plaintextStart = 0;
                }
                if (!more) return null;
            }
            return ready;
        }
        finally
        {
            _readLock.Release();
        }
    }

    /// <summary>Sends KeyUpdate and moves to the next write key; optionally asks the server to update too.</summary>
    public async ValueTask KeyUpdateAsync(bool requestPeerUpdate, CancellationToken cancellationToken)
    {
        if (Version == TlsVersions.Tls12) throw new InvalidOperationException("TLS 1.2 has no KeyUpdate");
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            ThrowIfUnusable();
            await SendKeyUpdateCoreAsync(requestPeerUpdate, cancellationToken);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async ValueTask SendKeyUpdateAsync(bool request, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await SendKeyUpdateCoreAsync(request, cancellationToken);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async ValueTask SendKeyUpdateCoreAsync(bool request, CancellationToken cancellationToken)
    {
        await _records.WriteAsync(ContentType.Handshake, SimpleMessages.KeyUpdate(request), cancellationToken);
        var write = _records.WriteProtection!;
        _records.SetWriteProtection(new RecordProtection(_suite, TrafficSecrets.Update(_suite, write.TrafficSecret)));
    }

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
            ThrowIfUnusable();
            if (_records.HasBufferedHandshake) throw new InvalidOperationException("cannot export in the middle of a fragmented handshake message");
            var read = _records.ReadProtection!;
            var write = _records.WriteProtection!;
            var session = Version == TlsVersions.Tls12 ? Export12(read, write) : new ExportedSession(_suite.Suite, (byte[])write.TrafficSecret.Clone(), (byte[])read.TrafficSecret.Clone(),
                write.Sequence, read.Sequence, (byte[])_resumptionMasterSecret.Clone(), ServerName, ApplicationProtocol,
                _plaintext.AsSpan(_plaintextStart).ToArray(), _records.UnprocessedTransportBytes.ToArray());
            _exported = true;
            _records.Dispose();
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

    /// <summary>Sends close_notify; the transport stays open until the connection is disposed.</summary>
    public async ValueTask CloseAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_sentCloseNotify || _exported || _broken is not null) return;
            _sentCloseNotify = true;
            await _records.SendAlertAsync(AlertDescription.CloseNotify, cancellationToken);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private void ThrowIfUnusable()
    {
        if (_exported) throw new TlsException(TlsError.ConnectionUnusable, AlertDescription.InternalError, "the connection was exported and can no longer be used here");
        if (_broken is not null) throw new TlsException(TlsError.ConnectionUnusable, AlertDescription.InternalError, "the connection failed earlier and can no longer be used", _broken);
    }

    private async ValueTask BreakAsync(TlsException e)
    {
        if (_broken is not null) return;
        _broken = e;
        if (e.SentByPeer || e.Error == TlsError.TransportClosed) return;
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await _records.SendAlertAsync(e.Alert, cts.Token);
        }
        catch (Exception)
        {
            // Best effort.
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            if (!_exported)
            {
                _records.Dispose();
                _records.Transport.Dispose();
            }
            CryptographicOperations.ZeroMemory(_resumptionMasterSecret);
            CryptographicOperations.ZeroMemory(_plaintext);
        }
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        if (!_exported && _broken is null && !_sentCloseNotify)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await CloseAsync(cts.Token);
            }
            catch (Exception)
            {
            }
        }
        Dispose(true);
        GC.SuppressFinalize(this);
    }
}
