using System.Security.Cryptography;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Tls;

namespace Daiko.Terminal.Agent;

/// <summary>
/// The terminal agent's one control channel to the home server: opened once (mutually authenticated
/// with the device key) and shared by every local client, whose requests it carries under its own
/// ids. A channel that drops is opened again on the next request, resuming the TLS session from a
/// ticket the home server issued on the earlier channel when it has one (no device signature, no
/// certificate check). The cost of opening it is charged to the request that needed it.
/// </summary>
internal sealed class HomeChannel : IAsyncDisposable
{
    private readonly string _directory;
    private readonly ECDsa _deviceKey;
    private readonly TimeProvider _time;
    private readonly Action<ControlMessage> _onNotice;
    private readonly Action _onRefused;
    private readonly SemaphoreSlim _opening = new(1, 1);
    private readonly TaskSet _watchers = new();
    private ControlConnection? _current;
    private TlsConnection? _tls;

    /// <param name="onRefused">Called once when the home server refuses the device (the agent drops its stock).</param>
    public HomeChannel(string directory, ECDsa deviceKey, TimeProvider time, Action<ControlMessage> onNotice, Action onRefused)
    {
        _time = time;
        _onRefused = onRefused;
        _directory = directory;
        _deviceKey = deviceKey;
        _onNotice = onNotice;
    }

    /// <summary>Set when the home server refused the device itself (revoked, unknown): the agent must end.</summary>
    public ControlErrorException? Refused { get; private set; }

    /// <summary>Channels opened so far, and how many of them resumed (for DAIKO_DEBUG and tests through the audit).</summary>
    public int Opened { get; private set; }

    public int Resumed { get; private set; }

    /// <summary>The open channel, opening (or resuming) it first if there is none; <paramref name="meter"/> is charged the opening.</summary>
    public async Task<ControlConnection> GetAsync(TlsCounters meter, CancellationToken cancellationToken)
    {
        if (Refused is { } refused) throw refused;
        if (_current is { Closed.IsCancellationRequested: false } open) return open;
        await _opening.WaitAsync(cancellationToken);
        try
        {
            if (_current is { Closed.IsCancellationRequested: false } raced) return raced;
            if (_current is { } dead) await CloseAsync(dead);
            var wire = new TlsCounters();
            // The newest ticket the home server issued on the channel that dropped resumes the next one.
            var ticket = _tls?.Tickets.LastOrDefault(t => !t.IsExpired(_time.GetUtcNow()));
            _tls = null;
            TlsConnection stream;
            try
            {
                stream = await TerminalClient.ConnectStreamAsync(_directory, _deviceKey, cancellationToken, wire, ticket);
            }
            finally
            {
                ticket?.Wipe();
                meter.Add(wire);
            }
            var connection = new ControlConnection(stream) { Wire = wire, OnNotice = _onNotice, Version = TerminalClient.VersionOf(stream) };
            connection.Start();
            _watchers.Track(connection.Completion.ContinueWith(_ => NoteRefusal(connection), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default));
            Opened++;
            if (stream.Resumed) Resumed++;
            _current = connection;
            _tls = stream;
            return connection;
        }
        finally
        {
            _opening.Release();
        }
    }

    /// <summary>Sends a request for a local client; a refusal of the whole channel (revoked) is kept so the agent can end.</summary>
    public async Task<ControlMessage> ExchangeAsync(ControlMessage request, TlsCounters meter, CancellationToken cancellationToken)
    {
        var channel = await GetAsync(meter, cancellationToken);
        try
        {
            return await channel.ExchangeAsync(request, meter, cancellationToken);
        }
        catch (ControlErrorException) when (channel.CloseCode is ErrorCode.Revoked or ErrorCode.UnknownDevice)
        {
            NoteRefusal(channel);
            throw;
        }
    }

    /// <summary>
    /// A channel the home server closed by refusing the device (revoked) is not opened again: the agent
    /// tells the next local client why, and ends.
    /// </summary>
    private void NoteRefusal(ControlConnection connection)
    {
        if (connection.CloseCode is ErrorCode.Revoked or ErrorCode.UnknownDevice && Refused is null)
        {
            Refused = new ControlErrorException(connection.CloseCode.Value, $"the home server closed the control channel: {connection.CloseReason}");
            _onRefused();
        }
    }

    /// <summary>The channel's open connection, if any (for relays).</summary>
    public ControlConnection? Current => _current;

    private static async Task CloseAsync(ControlConnection connection)
    {
        try { await connection.DisposeAsync(); }
        catch (Exception e) when (e is IOException or ObjectDisposedException or TlsException) { }
    }

    /// <summary>Drops the channel now (lock, idle expiry): the next request would open a new one.</summary>
    public async ValueTask DisposeAsync()
    {
        _tls = null;
        if (Interlocked.Exchange(ref _current, null) is { } current) await CloseAsync(current);
        // Each closed channel's refusal check has run (and thrown here if it failed).
        await _watchers.WhenAll();
    }
}
