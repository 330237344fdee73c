using System.Net;
using System.Security.Cryptography.X509Certificates;
using Daiko.Home.Devices;
using Daiko.Protocol;

namespace Daiko.Home.Control;

/// <summary>Where an authenticated device's requests go: its owner's devices, dispatcher and open channels.</summary>
/// <param name="Logger">Where the lines about this owner's devices' channels go (a hosted node's name the owner); null: the listener's own.</param>
public sealed record ControlRoute(DeviceRegistry Devices, RequestDispatcher Dispatcher, ConnectionRegistry Connections, Microsoft.Extensions.Logging.ILogger? Logger = null);

/// <summary>A presented device certificate looked up: the device (null when unknown) and its owner's route (null when no owner here).</summary>
public sealed record DeviceLookup(Device? Device, ControlRoute? Route);

/// <summary>
/// How the control listener finds the owner of a connection. A home server has one owner
/// (<see cref="SingleOwnerRoutes"/>); a hosted node has many: the device certificate it issued names
/// the owner, and an enrollment code's public id names the owner of a device that is not enrolled yet.
/// </summary>
public interface IControlRoutes
{
    /// <summary>Looks up the device of a certificate this server issued (its id from the subject).</summary>
    Task<DeviceLookup> FindDeviceAsync(X509Certificate2 certificate, string deviceId, CancellationToken cancellationToken);

    /// <summary>Answers a request of a connection without a device certificate (only enroll passes the listener's gate).</summary>
    Task DispatchStrangerAsync(ControlRequest request, ControlConnection connection, IPAddress peer);

    /// <summary>Where connections without a device certificate are registered.</summary>
    ConnectionRegistry StrangerConnections { get; }
}

/// <summary>The one owner of a home server: every connection goes to its devices and dispatcher.</summary>
public sealed class SingleOwnerRoutes(DeviceRegistry devices, RequestDispatcher dispatcher, ConnectionRegistry connections) : IControlRoutes
{
    private readonly ControlRoute _route = new(devices, dispatcher, connections);

    public async Task<DeviceLookup> FindDeviceAsync(X509Certificate2 certificate, string deviceId, CancellationToken cancellationToken) =>
        new(await devices.FindByIdAsync(deviceId, cancellationToken), _route);

    public Task DispatchStrangerAsync(ControlRequest request, ControlConnection connection, IPAddress peer) =>
        dispatcher.DispatchAsync(request, connection, null, peer);

    public ConnectionRegistry StrangerConnections => connections;
}
