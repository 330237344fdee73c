using System.Net;
using System.Net.Sockets;

namespace Daiko.Terminal.Forwarding;

/// <summary>
/// <c>daiko terminal forward</c>: a local plaintext port that any program can use (as ghostunnel's
/// client mode does). Each accepted connection gets its own delegated session from
/// <see cref="ConnectAsync"/>, and bytes are pumped both ways until either side closes.
/// </summary>
public sealed class LocalForwarder : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly Func<CancellationToken, Task<Stream>> _connect;
    private readonly Action<string>? _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private long _served;
    private long _failed;

    private LocalForwarder(TcpListener listener, Func<CancellationToken, Task<Stream>> connect, Action<string>? log)
    {
        _listener = listener;
        _connect = connect;
        _log = log;
        _acceptLoop = AcceptLoopAsync();
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_listener.LocalEndpoint;

    public long ConnectionsServed => Interlocked.Read(ref _served);

    public long ConnectionsFailed => Interlocked.Read(ref _failed);

    /// <summary>Listens on <paramref name="endPoint"/>; a non-loopback address must be asked for explicitly.</summary>
    public static LocalForwarder Start(IPEndPoint endPoint, Func<CancellationToken, Task<Stream>> connect, Action<string>? log = null)
    {
        var listener = new TcpListener(endPoint);
        listener.Start();
        return new LocalForwarder(listener, connect, log);
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
                _log?.Invoke($"could not open a delegated session: {e.Message}");
                return;
            }
            await using (remote)
            {
                var local = client.GetStream();
                var up = PumpAsync(local, remote, _ => { });
                var down = PumpAsync(remote, local, clean =>
                {
                    // A session that failed or was cut (no close_notify) is passed on as a reset, never as a clean end.
                    if (clean) client.Client.Shutdown(SocketShutdown.Send);
                    else
                    {
                        client.Client.LingerState = new LingerOption(true, 0);
                        client.Client.Close();
                    }
                });
                await Task.WhenAny(Task.WhenAll(up, down), Task.Delay(Timeout.Infinite, _stop.Token).ContinueWith(_ => { }, TaskScheduler.Default));
                Interlocked.Increment(ref _served);
            }
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
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Either side failed: the other learns it through onEnd.
        }
        finally
        {
            try { onEnd(clean); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _acceptLoop;
        _stop.Dispose();
    }
}
