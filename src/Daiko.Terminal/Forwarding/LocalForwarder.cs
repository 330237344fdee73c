using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Daiko.Terminal.Forwarding;

/// <summary>
/// <c>daiko terminal forward</c>: a local plaintext port that any program can use (as ghostunnel's
/// client mode does). Each accepted connection gets its own delegated session from
/// <see cref="ConnectAsync"/>, and bytes are pumped both ways until either side closes.
/// </summary>
public sealed partial class LocalForwarder : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly Func<CancellationToken, Task<Stream>> _connect;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private long _served;
    private long _failed;

    private LocalForwarder(TcpListener listener, Func<CancellationToken, Task<Stream>> connect, ILogger logger)
    {
        _listener = listener;
        _connect = connect;
        _logger = logger;
        _acceptLoop = AcceptLoopAsync();
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_listener.LocalEndpoint;

    public long ConnectionsServed => Interlocked.Read(ref _served);

    public long ConnectionsFailed => Interlocked.Read(ref _failed);

    /// <summary>Listens on <paramref name="endPoint"/>; a non-loopback address must be asked for explicitly.</summary>
    public static LocalForwarder Start(IPEndPoint endPoint, Func<CancellationToken, Task<Stream>> connect, ILogger? logger = null)
    {
        var listener = new TcpListener(endPoint);
        listener.Start();
        return new LocalForwarder(listener, connect, logger ?? NullLogger.Instance);
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

    private async Task ServeAsync(TcpClient client)
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
}
