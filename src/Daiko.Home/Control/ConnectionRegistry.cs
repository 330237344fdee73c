using System.Collections.Concurrent;
using Daiko.Protocol;

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

    /// <summary>Closes every connection of a device; returns how many were open.</summary>
    public int CloseDevice(string deviceId, string reason)
    {
        var closed = 0;
        foreach (var (connection, device) in _connections)
        {
            if (device != deviceId) continue;
            connection.Close(reason);
            closed++;
        }
        return closed;
    }

    public void CloseAll(string reason)
    {
        foreach (var connection in _connections.Keys) connection.Close(reason);
    }
}
