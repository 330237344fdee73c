using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace Daiko.TestSupport;

/// <summary>
/// An emulated slow link: a TCP relay on 127.0.0.1 that adds a one-way delay of RTT/2 and limits
/// bandwidth in each direction, and counts the bytes that cross it. The terminal connects to
/// <see cref="Port"/> instead of the real target.
/// </summary>
public sealed class SlowLink : IDisposable
{
    private readonly TcpListener _listener;
    private IPEndPoint _target;
    private readonly TimeSpan _oneWayDelay;
    private readonly double _bytesPerSecond;
    private readonly CancellationTokenSource _stop = new();
    private long _upstreamBytes;
    private long _downstreamBytes;
    private long _connections;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<TcpClient, byte> _live = new();

    /// <summary>Called as each connection is accepted, before anything is relayed.</summary>
    public Action? OnConnection { get; set; }

    private SlowLink(IPEndPoint target, TimeSpan roundTrip, double bitsPerSecond)
    {
        _target = target;
        _oneWayDelay = roundTrip / 2;
        _bytesPerSecond = bitsPerSecond / 8;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Bytes the client sent through the link.</summary>
    public long UpstreamBytes => Interlocked.Read(ref _upstreamBytes);

    /// <summary>Bytes the client received through the link.</summary>
    public long DownstreamBytes => Interlocked.Read(ref _downstreamBytes);

    public long Connections => Interlocked.Read(ref _connections);

    public static SlowLink Start(int targetPort, TimeSpan roundTrip, double bitsPerSecond)
    {
        var link = new SlowLink(new IPEndPoint(IPAddress.Loopback, targetPort), roundTrip, bitsPerSecond);
        _ = link.AcceptLoopAsync();
        return link;
    }

    /// <summary>Sends later connections to another port on 127.0.0.1 (a market restarted, say with new ticket keys); open ones stay.</summary>
    public void Retarget(int targetPort) => Volatile.Write(ref _target, new IPEndPoint(IPAddress.Loopback, targetPort));

    public void ResetCounters()
    {
        Interlocked.Exchange(ref _upstreamBytes, 0);
        Interlocked.Exchange(ref _downstreamBytes, 0);
        Interlocked.Exchange(ref _connections, 0);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception) { return; }
            Interlocked.Increment(ref _connections);
            OnConnection?.Invoke();
            _ = RelayAsync(client);
        }
    }

    private async Task RelayAsync(TcpClient client)
    {
        using (client)
        using (var server = new TcpClient())
        {
            _live[client] = 0;
            _live[server] = 0;
            try
            {
                client.NoDelay = true;
                server.NoDelay = true;
                await server.ConnectAsync(Volatile.Read(ref _target), _stop.Token);
                var up = PumpAsync(client.Client, server.Client, isUpstream: true);
                var down = PumpAsync(server.Client, client.Client, isUpstream: false);
                await Task.WhenAll(up, down);
            }
            catch (Exception) { }
            _live.TryRemove(client, out _);
            _live.TryRemove(server, out _);
        }
    }

    /// <summary>Cuts every connection now (both sides see a reset), as a dropped network would.</summary>
    public void DropConnections()
    {
        foreach (var socket in _live.Keys)
        {
            try { socket.Client.LingerState = new LingerOption(true, 0); } catch (Exception) { }
            socket.Dispose();
        }
    }

    private async Task PumpAsync(Socket from, Socket to, bool isUpstream)
    {
        var queue = Channel.CreateUnbounded<(byte[] Data, long DueTimestamp)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var writer = WriteDelayedAsync(queue.Reader, to);
        var buffer = new byte[16384];
        var wireFreeAt = Stopwatch.GetTimestamp();
        try
        {
            while (true)
            {
                var n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (n == 0) break;
                Interlocked.Add(ref isUpstream ? ref _upstreamBytes : ref _downstreamBytes, n);
                var now = Stopwatch.GetTimestamp();
                var serialization = (long)(n / _bytesPerSecond * Stopwatch.Frequency);
                wireFreeAt = Math.Max(wireFreeAt, now) + serialization;
                var due = wireFreeAt + (long)(_oneWayDelay.TotalSeconds * Stopwatch.Frequency);
                queue.Writer.TryWrite((buffer.AsSpan(0, n).ToArray(), due));
            }
        }
        catch (Exception) { }
        finally
        {
            queue.Writer.TryComplete();
            await writer;
        }
    }

    private async Task WriteDelayedAsync(ChannelReader<(byte[] Data, long DueTimestamp)> reader, Socket to)
    {
        try
        {
            await foreach (var (data, due) in reader.ReadAllAsync(_stop.Token))
            {
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                if (wait > TimeSpan.Zero) await Task.Delay(wait, _stop.Token);
                await to.SendAsync(data, SocketFlags.None, _stop.Token);
            }
            to.Shutdown(SocketShutdown.Send);
        }
        catch (Exception) { }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
    }
}
