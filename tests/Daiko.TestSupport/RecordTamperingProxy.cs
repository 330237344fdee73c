using System.Net;
using System.Net.Sockets;

namespace Daiko.TestSupport;

/// <summary>Which way a record travels through a <see cref="RecordTamperingProxy"/>.</summary>
public enum RecordDirection
{
    ClientToServer,
    ServerToClient,
}

/// <summary>
/// An active attacker between a client and a real TLS server, on 127.0.0.1: it forwards connections
/// record by record and lets a test rewrite any record's content (type and payload, the header's length
/// is recomputed) or hold a record back for a while (a slow or loaded server). Used to prove the client
/// refuses what a network attacker can do, and copes with what a slow network does.
/// </summary>
public sealed class RecordTamperingProxy : IDisposable
{
    /// <summary>Returns the content to forward instead (or the same array).</summary>
    public delegate byte[] Tamper(RecordDirection direction, byte type, byte[] content);

    /// <summary>How long to hold a record back before forwarding it (zero: not at all).</summary>
    public delegate TimeSpan Hold(RecordDirection direction, byte type, byte[] content);

    private readonly TcpListener _listener;
    private readonly int _upstreamPort;
    private readonly Tamper _tamper;
    private readonly Hold? _hold;
    private readonly CancellationTokenSource _stop = new();
    private int _connections;
    private int _open;

    private RecordTamperingProxy(TcpListener listener, int upstreamPort, Tamper tamper, Hold? hold)
    {
        _listener = listener;
        _upstreamPort = upstreamPort;
        _tamper = tamper;
        _hold = hold;
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Connections accepted so far.</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Connections accepted and not yet ended on both sides.</summary>
    public int Open => Volatile.Read(ref _open);

    public static RecordTamperingProxy Start(int upstreamPort, Tamper tamper, Hold? hold = null)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var proxy = new RecordTamperingProxy(listener, upstreamPort, tamper, hold);
        _ = proxy.AcceptAsync();
        return proxy;
    }

    private async Task AcceptAsync()
    {
        // Bounded: a test makes a handful of connections.
        for (var i = 0; i < 1000 && !_stop.IsCancellationRequested; i++)
        {
            try
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                Interlocked.Increment(ref _connections);
                Interlocked.Increment(ref _open);
                _ = ForwardAsync(client);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
        }
    }

    private async Task ForwardAsync(TcpClient accepted)
    {
        try
        {
            using var client = accepted;
            using var server = new TcpClient { NoDelay = true };
            await server.ConnectAsync(IPAddress.Loopback, _upstreamPort, _stop.Token);
            client.NoDelay = true;
            var up = PumpAsync(client.GetStream(), server.GetStream(), RecordDirection.ClientToServer, () => server.Client.Shutdown(SocketShutdown.Send));
            var down = PumpAsync(server.GetStream(), client.GetStream(), RecordDirection.ServerToClient, () => client.Client.Shutdown(SocketShutdown.Send));
            await Task.WhenAll(up, down);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The test is over or a side went away.
        }
        finally
        {
            Interlocked.Decrement(ref _open);
        }
    }

    private async Task PumpAsync(Stream from, Stream to, RecordDirection direction, Action shutdown)
    {
        var header = new byte[5];
        try
        {
            // Bounded: a handshake test exchanges a few dozen records at most.
            for (var records = 0; records < 10_000; records++)
            {
                if (!await ReadExactlyOrEndAsync(from, header)) break;
                var content = new byte[(header[3] << 8) | header[4]];
                if (!await ReadExactlyOrEndAsync(from, content)) break;
                var replaced = _tamper(direction, header[0], content);
                if (_hold?.Invoke(direction, header[0], replaced) is { } hold && hold > TimeSpan.Zero) await Task.Delay(hold, _stop.Token);
                header[3] = (byte)(replaced.Length >> 8);
                header[4] = (byte)replaced.Length;
                await to.WriteAsync(header, _stop.Token);
                await to.WriteAsync(replaced, _stop.Token);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            try { shutdown(); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        }
    }

    private async Task<bool> ReadExactlyOrEndAsync(Stream stream, byte[] buffer)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(read), _stop.Token);
            if (n == 0) return false;
            read += n;
        }
        return true;
    }

    /// <summary>Offsets and lengths (header included) of the handshake messages inside one plaintext record.</summary>
    public static IEnumerable<(byte Type, int Offset, int Length)> HandshakeMessages(byte[] content)
    {
        for (var p = 0; p + 4 <= content.Length;)
        {
            var length = (content[p + 1] << 16) | (content[p + 2] << 8) | content[p + 3];
            yield return (content[p], p, 4 + length);
            p += 4 + length;
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
    }
}
