using System.Net;
using System.Net.Sockets;

namespace Daiko.TestSupport;

/// <summary>Loopback-only networking helpers for tests.</summary>
public static class Loopback
{
    private static readonly Queue<int> Recent = new();

    /// <summary>
    /// A TCP port on 127.0.0.1 that was free a moment ago, and none of the last 256 this process was
    /// given: the kernel may hand the same ephemeral port to two calls in a row, and a test that asks
    /// for two ports (a listener and a console) before either is bound would get one port twice.
    /// </summary>
    public static int FreePort()
    {
        lock (Recent)
        {
            // A port given out lately stays bound while the next is asked for, so the kernel picks another.
            var held = new List<TcpListener>();
            try
            {
                while (true)
                {
                    var listener = new TcpListener(IPAddress.Loopback, 0);
                    held.Add(listener);
                    listener.Start();
                    var port = ((IPEndPoint)listener.LocalEndpoint).Port;
                    if (Recent.Contains(port)) continue;
                    Recent.Enqueue(port);
                    if (Recent.Count > 256) Recent.Dequeue();
                    return port;
                }
            }
            finally
            {
                foreach (var listener in held) listener.Stop();
            }
        }
    }

    /// <summary>Waits until something accepts TCP connections on 127.0.0.1:<paramref name="port"/>.</summary>
    public static async Task WaitForListenerAsync(int port, TimeSpan timeout, Func<bool>? stillAlive = null)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            if (stillAlive is not null && !stillAlive())
            {
                throw new InvalidOperationException($"the server process exited before listening on port {port}");
            }
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port, cts.Token);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50, cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"nothing listened on 127.0.0.1:{port} within {timeout.TotalSeconds:0.#} s");
            }
        }
    }

    /// <summary>Two connected TCP sockets on 127.0.0.1 (a client and the server side it reached); dispose both.</summary>
    public static async Task<(TcpClient Client, TcpClient Server)> ConnectedPairAsync()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var client = new TcpClient();
        var accept = listener.AcceptTcpClientAsync();
        await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        return (client, await accept);
    }
}
