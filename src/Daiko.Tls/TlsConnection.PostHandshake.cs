using System.Threading.Channels;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;

namespace Daiko.Tls;

/// <summary>
/// Post-handshake messages of a <see cref="TlsConnection"/>: session tickets (kept within a count and a
/// byte budget, newest first to survive) and KeyUpdate (an update_requested is answered once, before
/// the next application data, never from inside the read path).
/// </summary>
public sealed partial class TlsConnection
{
    /// <summary>Tickets kept per connection; older ones make way for newer.</summary>
    public const int MaxTicketsKept = 8;

    /// <summary>Bytes of ticket identities kept per connection.</summary>
    public const int MaxTicketBytesKept = 128 * 1024;

    private readonly LinkedList<SessionTicket> _tickets = new();
    private int _ticketBytes;
    private readonly Channel<SessionTicket> _newTickets = Channel.CreateBounded<SessionTicket>(
        new BoundedChannelOptions(MaxTicketsKept) { FullMode = BoundedChannelFullMode.DropOldest });
    private bool _keyUpdateOwed;

    /// <summary>The tickets received and kept (at most <see cref="MaxTicketsKept"/>, oldest first).</summary>
    public IReadOnlyList<SessionTicket> Tickets
    {
        get { lock (_tickets) return _tickets.ToArray(); }
    }

    private void HandlePostHandshake(HandshakeMessage message)
    {
        if (Version == TlsVersions.Tls12) throw RefusePostHandshake12(message);
        // No post-handshake message carries data: a storm of tickets or KeyUpdates counts against the same
        // limit as empty records (as Go's crypto/tls counts each against maxUselessRecords), so a read
        // does not spin on them forever. A server's batch of tickets stays well within it.
        _records.NoteRecordWithoutData(message.Type.ToString());
        switch (message.Type)
        {
            case HandshakeType.NewSessionTicket:
            {
                var nst = NewSessionTicket.Parse(message.Body);
                // An imported session without its resumption secret (the home server hands none over) keeps no ticket.
                if (_resumptionMasterSecret.Length == 0) break;
                var psk = TrafficSecrets.TicketPsk(_suite, _resumptionMasterSecret, nst.Nonce);
                var ticket = new SessionTicket(nst.Ticket, psk, _suite.Suite, ServerName, ApplicationProtocol,
                    nst.Lifetime, nst.AgeAdd, nst.MaxEarlyData, _options.Time.GetUtcNow(), nst.Nonce);
                Receive(ticket);
                break;
            }
            case HandshakeType.KeyUpdate:
            {
                var requested = SimpleMessages.ParseKeyUpdate(message.Body);
                var read = _records.ReadProtection!;
                _records.SetReadProtection(new RecordProtection(_suite, TrafficSecrets.Update(_suite, read.TrafficSecret)));
                // RFC 8446 §4.6.3: the answer goes before our next application data; any number of
                // requests until then is answered by that one KeyUpdate.
                if (requested) _keyUpdateOwed = true;
                break;
            }
            default:
                throw TlsException.Unexpected($"{message.Type} after the handshake");
        }
    }

    /// <summary>A ticket received: kept and queued for <see cref="WaitForTicketAsync"/>, or wiped at once once tickets are forgone.</summary>
    private void Receive(SessionTicket ticket)
    {
        lock (_tickets)
        {
            if (_ticketsForgone)
            {
                ticket.Wipe();
                TicketsWiped++;
                return;
            }
            _tickets.AddLast(ticket);
            _ticketBytes += ticket.Identity.Length;
            while (_tickets.Count > MaxTicketsKept || _ticketBytes > MaxTicketBytesKept)
            {
                _ticketBytes -= _tickets.First!.Value.Identity.Length;
                _tickets.RemoveFirst();
            }
            _newTickets.Writer.TryWrite(ticket);
        }
    }

    private bool _ticketsForgone;

    /// <summary>Tickets wiped because they were forgone (under the tickets' lock; tests read it).</summary>
    internal int TicketsWiped { get; private set; }

    /// <summary>
    /// For a connection whose tickets nobody will use (a session the home server relays): wipes every ticket received
    /// and not yet taken with <see cref="WaitForTicketAsync"/>, and each one received from now on as it arrives. A TLS 1.2
    /// ticket's secret is the session's master secret, so one left on the heap would decrypt the recorded session.
    /// Tickets already taken are their takers' and are left alone.
    /// </summary>
    public void ForgoTickets()
    {
        lock (_tickets)
        {
            _ticketsForgone = true;
            while (_newTickets.Reader.TryRead(out var untaken))
            {
                if (_tickets.Remove(untaken)) _ticketBytes -= untaken.Identity.Length;
                untaken.Wipe();
                TicketsWiped++;
            }
        }
    }

    /// <summary>Sends the KeyUpdate the server asked for, if one is owed (under the write lock).</summary>
    private async ValueTask AnswerKeyUpdateIfOwedAsync(CancellationToken cancellationToken)
    {
        if (!_keyUpdateOwed) return;
        _keyUpdateOwed = false;
        await SendKeyUpdateCoreAsync(false, cancellationToken);
    }

    /// <summary>
    /// Plaintext a wait for a ticket keeps unread before it stops waiting: a server that streams data and
    /// sends no ticket would otherwise have all of it held in memory until the wait times out.
    /// </summary>
    public const int MaxPlaintextWaitingForTicket = 64 * 1024;

    /// <summary>
    /// Waits up to <paramref name="timeout"/> for a ticket not yet returned by this method. Application
    /// data arriving meanwhile is kept for <see cref="ReadAsync(Memory{byte}, CancellationToken)"/>; once
    /// more than <see cref="MaxPlaintextWaitingForTicket"/> bytes of it wait, the wait ends with no ticket.
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
            using var hold = Hold();
            while (!_newTickets.Reader.TryRead(out ready))
            {
                ThrowIfUnusable();
                if (_receivedCloseNotify || UnreadPlaintext.Length > MaxPlaintextWaitingForTicket) return null;
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
            using var hold = Hold();
            _keyUpdateOwed = false;
            await SendKeyUpdateCoreAsync(requestPeerUpdate, cancellationToken);
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
}
