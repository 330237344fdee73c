using System.Collections.Concurrent;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Control;

/// <summary>The open control connections and the device each one authenticated as.</summary>
public sealed class ConnectionRegistry
{
    private readonly ConcurrentDictionary<ControlConnection, string?> _connections = new();

    public int Count => _connections.Count;

    /// <summary>Open channels per device id (null: not yet enrolled), for the owner's console.</summary>
    public IReadOnlyDictionary<string, int> CountsByDevice() =>
        _connections.Values.GroupBy(d => d ?? "").ToDictionary(g => g.Key, g => g.Count());

    public void Add(ControlConnection connection, string? deviceId) => _connections[connection] = deviceId;

    public void Remove(ControlConnection connection) => _connections.TryRemove(connection, out _);

    /// <summary>
    /// Closes every connection of a device; returns how many were open. Each is first told to drop its
    /// ticket stock, and refused as revoked (an error frame with id 0), so that the terminal agent ends at once.
    /// </summary>
    public async Task<int> CloseDeviceAsync(string deviceId, string reason)
    {
        var closed = 0;
        foreach (var (connection, device) in _connections)
        {
            if (device != deviceId) continue;
            await TellAsync(connection, new DropTicketsNotice(reason));
            await TellAsync(connection, new ErrorReply(ErrorCode.Revoked, reason));
            connection.Close(reason);
            closed++;
        }
        return closed;
    }

    /// <summary>Sends a notice (id 0) to every open connection of one device; one that is gone is skipped.</summary>
    public async Task NotifyDeviceAsync(string deviceId, ControlMessage notice)
    {
        foreach (var (connection, device) in _connections)
        {
            if (device == deviceId) await TellAsync(connection, notice);
        }
    }

    private static async Task TellAsync(ControlConnection connection, ControlMessage notice)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await connection.SendAsync(0, notice, deadline.Token);
        }
        catch (Exception e) when (e is ControlErrorException or OperationCanceledException)
        {
            // The connection is gone or stuck: it ends without the notice.
        }
    }

    public void CloseAll(string reason)
    {
        foreach (var connection in _connections.Keys) connection.Close(reason);
    }
}
