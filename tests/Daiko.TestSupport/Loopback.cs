using System.Net;
using System.Net.Sockets;

namespace Daiko.TestSupport;

/// <summary>Loopback-only networking helpers for tests.</summary>
public static class Loopback
{
    /// <summary>A TCP port on 127.0.0.1 that was free a moment ago.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
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
