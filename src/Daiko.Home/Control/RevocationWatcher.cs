using Daiko.Home.Delegation;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Control;

/// <summary>
/// Picks up revocations from the device store (written by <c>daiko home device revoke</c> in another
/// process) and, within one poll, closes the device's channels and purges its cached secrets. A device
/// is judged by whether it is still enrolled, not by its revoked row: enrolling the name again removes
/// that row, maybe before this server looked (its looks may have failed for a while).
/// </summary>
public sealed class RevocationWatcher(DeviceRegistry devices, ConnectionRegistry connections, SessionCache<Daiko.Tls.SessionTicket> tickets, TimeProvider time, ILogger logger)
{
    /// <summary>Looks every <paramref name="poll"/>; a busy or unreachable store is tried again at the next poll.</summary>
    public Task RunAsync(TimeSpan poll, CancellationToken cancellationToken) =>
        new BackgroundLook("reading the revoked devices", PollOnceAsync, e => e is System.Data.Common.DbException, time, logger).RunAsync(poll, cancellationToken);

    /// <summary>
    /// One look at the devices with a channel open or secrets cached here: those no longer enrolled (revoked,
    /// or revoked and their name enrolled again since) have their channels closed and their cached secrets purged.
    /// </summary>
    public async Task PollOnceAsync(CancellationToken cancellationToken)
    {
        // Listed before the store is read (a device enrolled and connected meanwhile is not among them).
        var held = connections.DeviceIds().Concat(tickets.DeviceIds()).ToList();
        foreach (var id in await devices.NoLongerEnrolledAsync(held, cancellationToken))
        {
            var purged = tickets.PurgeDevice(id);
            if (await connections.CloseDeviceAsync(id, "this device was revoked by the home server's owner") > 0) logger.DeviceRevoked(id, purged);
        }
    }
}
