using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Daiko.Terminal.Forwarding;

/// <summary>
/// <c>daiko terminal forward</c>: a local plaintext port for this user's programs (as ghostunnel's
/// client mode offers). Each accepted connection gets its own delegated session, and bytes are pumped
/// both ways until either side closes. Whoever connects acts as the owner at the market, so by default only
/// this process's own user may: the port listens on loopback, and a connection from another local user
/// (its socket's owner in the kernel's tables) is closed before any session is asked for. At most
/// <see cref="MaxOpen"/> connections are served at once (each holds a market connection and cost the home
/// card a signature or a ticket); more are closed at once.
/// </summary>
public sealed partial class LocalForwarder : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly Func<CancellationToken, Task<Stream>> _connect;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private readonly bool _allowOthers;
    private long _served;
    private long _failed;
    private long _refused;
    private int _open;

    /// <summary>Connections served at once, as many as a home server keeps open relays for one device.</summary>
    public const int MaxOpen = 64;

    private LocalForwarder(TcpListener listener, Func<CancellationToken, Task<Stream>> connect, ILogger logger, bool allowOthers)
    {
        _listener = listener;
        _connect = connect;
        _logger = logger;
        _allowOthers = allowOthers;
        _acceptLoop = AcceptLoopAsync();
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_listener.LocalEndpoint;

    public long ConnectionsServed => Interlocked.Read(ref _served);

    public long ConnectionsFailed => Interlocked.Read(ref _failed);

    /// <summary>Connections closed unserved: another user's, or past <see cref="MaxOpen"/>.</summary>
    public long ConnectionsRefused => Interlocked.Read(ref _refused);

    /// <summary>
    /// Listens on <paramref name="endPoint"/>. Without <paramref name="allowOthers"/> the address must be a loopback
    /// one and only this user's connections are served; with it, everyone who reaches the port acts as the owner.
    /// </summary>
    /// <exception cref="ArgumentException">a non-loopback address without <paramref name="allowOthers"/>.</exception>
    public static LocalForwarder Start(IPEndPoint endPoint, Func<CancellationToken, Task<Stream>> connect, ILogger? logger = null, bool allowOthers = false)
    {
        if (!allowOthers && !IPAddress.IsLoopback(endPoint.Address))
        {
            throw new ArgumentException($"{endPoint.Address} is not a loopback address: every machine that reaches it would use the market as the owner; listen on 127.0.0.1, or pass --allow-others to mean it");
        }
        var listener = new TcpListener(endPoint);
        listener.Start();
        return new LocalForwarder(listener, connect, logger ?? NullLogger.Instance, allowOthers);
    }

    /// <summary>Completes when the forwarder stops.</summary>
    public Task Completion => _acceptLoop;

    private async Task AcceptLoopAsync()
    {
        var sessions = new List<Task>();
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                break;
            }
            catch (SocketException)
            {
                continue;
            }
            sessions.RemoveAll(t => t.IsCompleted);
            sessions.Add(ServeAsync(client));
        }
        await Task.WhenAll(sessions);
    }

    /// <summary>Why <paramref name="client"/> is not served, or null: another user's connection, or one past <see cref="MaxOpen"/>.</summary>
    private string? Refusal(TcpClient client)
    {
        if (Volatile.Read(ref _open) >= MaxOpen) return $"{MaxOpen} connections are open already; close one first";
        if (_allowOthers) return null;
        var peer = (IPEndPoint)client.Client.RemoteEndPoint!;
        var user = LoopbackPeers.UserOf(peer, (IPEndPoint)client.Client.LocalEndPoint!);
        var me = Agent.PeerCredentials.CurrentUser();
        return user == me ? null : user is null
            ? $"the user behind {peer} could not be told (no kernel socket table shows it); only this user ({me}) may use the forward, unless --allow-others"
            : $"{peer} belongs to local user {user}; only this user ({me}) may use the forward, unless --allow-others";
    }

    private async Task ServeAsync(TcpClient client)
    {
        if (Refusal(client) is { } refusal)
        {
            Interlocked.Increment(ref _refused);
            ConnectionRefused(_logger, refusal);
            client.Client.LingerState = new LingerOption(true, 0);
            client.Dispose();
            return;
        }
        Interlocked.Increment(ref _open);
        try
        {
            await ServeOwnAsync(client);
        }
        finally
        {
            Interlocked.Decrement(ref _open);
        }
    }

    private async Task ServeOwnAsync(TcpClient client)
    {
        using (client)
        {
            Stream remote;
            try
            {
                using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                connectTimeout.CancelAfter(TimeSpan.FromSeconds(30));
                remote = await _connect(connectTimeout.Token);
            }
            catch (Exception e)
            {
                Interlocked.Increment(ref _failed);
                SessionFailed(_logger, e.GetType().Name, e.Message);
                return;
            }
            await using (remote)
            {
                var local = client.GetStream();
                var up = PumpAsync(local, remote, _ => { });
                var down = PumpAsync(remote, local, clean => EndLocal(client, clean));
                await Task.WhenAny(Task.WhenAll(up, down), Task.Delay(Timeout.Infinite, _stop.Token).ContinueWith(_ => { }, TaskScheduler.Default));
                Interlocked.Increment(ref _served);
            }
        }
    }

    /// <summary>
    /// Tells the local client the market is done sending: a half close after a clean end, a reset when
    /// the session failed or was cut (no close_notify), never taking one for the other.
    /// </summary>
    private static void EndLocal(TcpClient client, bool clean)
    {
        try
        {
            if (clean)
            {
                client.Client.Shutdown(SocketShutdown.Send);
            }
            else
            {
                client.Client.LingerState = new LingerOption(true, 0);
                client.Client.Close();
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The local client already went away.
        }
    }

    private async Task PumpAsync(Stream from, Stream to, Action<bool> onEnd)
    {
        var clean = false;
        try
        {
            await from.CopyToAsync(to, _stop.Token);
            await to.FlushAsync(_stop.Token);
            clean = true;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or Daiko.Tls.TlsException or Daiko.Protocol.ControlErrorException)
        {
            // One side ended or failed: this pipe is over, the other side is closed by onEnd.
        }
        finally
        {
            onEnd(clean);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _acceptLoop;
        _stop.Dispose();
    }

    [LoggerMessage(1, LogLevel.Warning, "could not open a delegated session: {Kind}: {Reason}")]
    private static partial void SessionFailed(ILogger logger, string kind, string reason);

    [LoggerMessage(2, LogLevel.Warning, "refused a connection: {Reason}")]
    private static partial void ConnectionRefused(ILogger logger, string reason);
}
