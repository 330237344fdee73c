using System.Collections.Concurrent;
using Daiko.Home.Policy;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Control;

/// <summary>The open control connections and the device each one authenticated as.</summary>
public sealed class ConnectionRegistry
{
    private readonly ConcurrentDictionary<ControlConnection, string?> _connections = new();
    private volatile string? _sealed;

    public int Count => _connections.Count;

    /// <summary>Open channels per device id (null: not yet enrolled), for the owner's console.</summary>
    public IReadOnlyDictionary<string, int> CountsByDevice() =>
        _connections.Values.GroupBy(d => d ?? "").ToDictionary(g => g.Key, g => g.Count());

    /// <summary>The devices with a channel open here (channels of peers not yet enrolled left out).</summary>
    public IReadOnlyList<string> DeviceIds() => _connections.Values.OfType<string>().Distinct(StringComparer.Ordinal).ToList();

    /// <summary>Registers an open connection; on a sealed registry (<see cref="Seal"/>) it is closed at once.</summary>
    public void Add(ControlConnection connection, string? deviceId)
    {
        _connections[connection] = deviceId;
        if (_sealed is { } reason) connection.Close(reason);
    }

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

    /// <summary>
    /// Tells every open connection of one device to drop its ticket stock now (one that is gone is
    /// skipped); returns how many were told. The tickets still count against the device's ticket limit
    /// until they expire: the home server cannot see an agent drop them, and an agent that ignored the
    /// notice would otherwise take a fresh allowance after every lock.
    /// </summary>
    public async Task<int> DropTicketsAsync(string deviceId, string reason)
    {
        var told = 0;
        foreach (var (connection, device) in _connections)
        {
            if (device == deviceId && await TellAsync(connection, new DropTicketsNotice(reason))) told++;
        }
        return told;
    }

    private static async Task<bool> TellAsync(ControlConnection connection, ControlMessage notice)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await connection.SendAsync(0, notice, deadline.Token);
            return true;
        }
        catch (Exception e) when (e is ControlErrorException or OperationCanceledException)
        {
            // The connection is gone or stuck: it ends without the notice.
            return false;
        }
    }

    public void CloseAll(string reason)
    {
        foreach (var connection in _connections.Keys) connection.Close(reason);
    }

    /// <summary>
    /// Closes every connection and every one added from now on (the parts they were routed to are going
    /// away: a route handed out just before cannot keep a channel on them).
    /// </summary>
    public void Seal(string reason)
    {
        _sealed = reason;
        CloseAll(reason);
    }
}
