using System.Security.Cryptography;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;

namespace Daiko.Tls;

/// <summary>
/// An established TLS 1.3 connection, usable as a <see cref="Stream"/>. Handles post-handshake
/// messages itself (NewSessionTicket, KeyUpdate, alerts). A connection that failed is broken for good;
/// one that was exported can no longer be used here. Reading returns 0 only after close_notify: an end
/// of the transport without it is <see cref="TlsError.Truncated"/>. Each read and write is bounded by
/// <see cref="TlsClientOptions.OperationTimeout"/>. This file holds the stream surface and the read
/// path; post-handshake messages and the handover live beside it.
/// </summary>
public sealed partial class TlsConnection : Stream
{
    private readonly RecordLayer _records;
    private readonly TlsClientOptions _options;
    private readonly CipherSuiteInfo _suite;
    private readonly byte[] _resumptionMasterSecret;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly SemaphoreSlim _readLock = new(1, 1);
    // Decrypted application data not yet delivered: _plaintext[_plaintextStart.._plaintextEnd].
    private byte[] _plaintext = [];
    private int _plaintextStart;
    private int _plaintextEnd;
    private bool _receivedCloseNotify;
    private bool _closedWithoutCloseNotify;
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

    /// <summary>The server ended the transport without close_notify: what was read may be truncated.</summary>
    public bool ClosedWithoutCloseNotify => _closedWithoutCloseNotify;

    public TlsCounters? Counters => _options.Counters;

    /// <summary>The server closed before the client's Finished: reading what it sent still works, writing does not.</summary>
    internal void MarkPeerClosedWrites() => _sentCloseNotify = true;

    /// <summary>Plaintext handed over with an imported session: a copy, since the buffer is ours to wipe and reuse.</summary>
    internal void AddPendingPlaintext(byte[] bytes)
    {
        if (bytes.Length == 0) return;
        _plaintext = bytes.ToArray();
        _plaintextStart = 0;
        _plaintextEnd = bytes.Length;
    }

    /// <summary>Decrypted application data not yet delivered to a reader.</summary>
    private ReadOnlySpan<byte> UnreadPlaintext => _plaintext.AsSpan(_plaintextStart, _plaintextEnd - _plaintextStart);

    /// <summary>
    /// Appends a record's plaintext to what is not delivered yet (a wait for a ticket reads on while data
    /// waits). The buffer grows by doubling and is reused, so what is kept is copied a bounded number of
    /// times, not once per record; a buffer given up is wiped.
    /// </summary>
    private void AppendPlaintext(ReadOnlySpan<byte> content)
    {
        var unread = _plaintextEnd - _plaintextStart;
        if (_plaintext.Length - _plaintextEnd < content.Length)
        {
            if (_plaintext.Length - unread >= content.Length)
            {
                _plaintext.AsSpan(_plaintextStart, unread).CopyTo(_plaintext);
            }
            else
            {
                var grown = new byte[Math.Max(_plaintext.Length * 2, unread + content.Length)];
                _plaintext.AsSpan(_plaintextStart, unread).CopyTo(grown);
                CryptographicOperations.ZeroMemory(_plaintext);
                _plaintext = grown;
            }
            _plaintextStart = 0;
            _plaintextEnd = unread;
        }
        content.CopyTo(_plaintext.AsSpan(_plaintextEnd));
        _plaintextEnd += content.Length;
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
            using var hold = Hold();
            // The operation's timer starts only when a record must be read: a read served from plaintext
            // already decrypted costs no timer.
            CancellationTokenSource? bound = null;
            try
            {
                while (true)
                {
                    ThrowIfUnusable();
                    if (_plaintextStart < _plaintextEnd)
                    {
                        var n = Math.Min(buffer.Length, _plaintextEnd - _plaintextStart);
                        _plaintext.AsSpan(_plaintextStart, n).CopyTo(buffer.Span);
                        _plaintextStart += n;
                        if (_plaintextStart == _plaintextEnd) _plaintextStart = _plaintextEnd = 0;
                        return n;
                    }
                    if (_receivedCloseNotify || buffer.IsEmpty) return 0;
                    if (_closedWithoutCloseNotify || !await ReadBoundedAsync(bound ??= Bound(cancellationToken), cancellationToken))
                    {
                        if (_closedWithoutCloseNotify) throw Truncated();
                        return 0;
                    }
                }
            }
            finally
            {
                bound?.Dispose();
            }
        }
        finally
        {
            _readLock.Release();
        }
    }

    private static TlsException Truncated() => new(TlsError.Truncated, AlertDescription.CloseNotify,
        "the server closed the connection without close_notify: what was received may be truncated");

    /// <summary>A token for one operation: the caller's, cut off after <see cref="TlsClientOptions.OperationTimeout"/>.</summary>
    private CancellationTokenSource Bound(CancellationToken cancellationToken)
    {
        var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (_options.OperationTimeout != Timeout.InfiniteTimeSpan) bound.CancelAfter(_options.OperationTimeout);
        return bound;
    }

    /// <summary>One record under the operation bound; running out of time breaks the connection with a <see cref="TlsError.Timeout"/>.</summary>
    private async ValueTask<bool> ReadBoundedAsync(CancellationTokenSource bound, CancellationToken cancellationToken)
    {
        try
        {
            return await ReadOneRecordAsync(bound.Token);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && bound.IsCancellationRequested
            && (e is OperationCanceledException || e.InnerException is OperationCanceledException))
        {
            throw await TimedOutAsync("sent nothing", holdingWriteLock: false);
        }
    }

    private async ValueTask<TlsException> TimedOutAsync(string what, bool holdingWriteLock)
    {
        var timeout = new TlsException(TlsError.Timeout, AlertDescription.UserCanceled,
            $"the server {what} for {_options.OperationTimeout.TotalSeconds:0.#} s");
        await BreakAsync(timeout, holdingWriteLock);
        return timeout;
    }

    /// <summary>Processes one record; returns false at the end of the stream.</summary>
    private async ValueTask<bool> ReadOneRecordAsync(CancellationToken cancellationToken)
    {
        try
        {
            var record = await _records.ReadRecordAsync(cancellationToken);
            if (record is null)
            {
                // The transport ended without close_notify: an attacker on the path can do that at any
                // byte, so the reader is told (Truncated) instead of seeing a clean end.
                _closedWithoutCloseNotify = true;
                return false;
            }
            var (type, content) = record.Value;
            switch (type)
            {
                case ContentType.ApplicationData:
                    if (_records.HasBufferedHandshake) throw TlsException.Unexpected("application data inside a fragmented handshake message");
                    _records.ResetRecordsWithoutData();
                    AppendPlaintext(content.Span);
                    return true;
                case ContentType.Handshake:
                    _records.AddHandshakeData(content.Span);
                    while (_records.TryDequeueHandshake(out var message))
                    {
                        HandlePostHandshake(message);
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
            await BreakAsync(e, holdingWriteLock: false);
            throw;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            var wrapped = new TlsException(TlsError.TransportClosed, AlertDescription.InternalError, $"the transport failed: {e.Message}", e);
            _broken = wrapped;
            throw wrapped;
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            using var hold = Hold();
            if (_sentCloseNotify) throw new TlsException(TlsError.ConnectionUnusable, AlertDescription.InternalError, "the connection was closed for writing");
            using var bound = Bound(cancellationToken);
            try
            {
                await AnswerKeyUpdateIfOwedAsync(bound.Token);
                await _records.WriteAsync(ContentType.ApplicationData, buffer, bound.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw await TimedOutAsync("read nothing we sent", holdingWriteLock: true);
            }
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

    /// <summary>Sends close_notify; the transport stays open until the connection is disposed.</summary>
    public async ValueTask CloseAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_sentCloseNotify || _exported || _broken is not null) return;
            using var hold = Hold();
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

    /// <summary>
    /// Marks the connection broken and tells the server why. The alert is a record like any other: it
    /// waits (briefly) for the write lock, since a write in progress owns the output buffer and the
    /// write sequence number; a write that holds on longer means no alert.
    /// </summary>
    private async ValueTask BreakAsync(TlsException e, bool holdingWriteLock)
    {
        if (_broken is not null) return;
        _broken = e;
        if (e.SentByPeer || e.Error == TlsError.TransportClosed) return;
        if (!holdingWriteLock && !await _writeLock.WaitAsync(TimeSpan.FromSeconds(1))) return;
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await _records.SendAlertAsync(e.Alert, cts.Token);
        }
        catch (Exception)
        {
            // Best effort.
        }
        finally
        {
            if (!holdingWriteLock) _writeLock.Release();
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) Retire(disposeTransport: !_exported);
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
