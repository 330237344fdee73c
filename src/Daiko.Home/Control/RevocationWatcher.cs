using Daiko.Home.Delegation;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Control;

/// <summary>
/// Picks up revocations from the device store (written by <c>daiko home device revoke</c> in another
/// process) and, within one poll, closes the device's channels and purges its cached secrets.
/// </summary>
public sealed class RevocationWatcher(DeviceRegistry devices, ConnectionRegistry connections, SessionCache<Daiko.Tls.SessionTicket> tickets, TimeProvider time, ILogger logger)
{
    public async Task RunAsync(TimeSpan poll, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(poll, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                try
                {
                    await PollOnceAsync(cancellationToken);
                }
                catch (System.Data.Common.DbException e)
                {
                    // A busy or briefly locked store: the next poll tries again.
                    logger.RevocationReadFailed(e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>One look at the revoked devices: their channels closed, their cached secrets purged.</summary>
    public async Task PollOnceAsync(CancellationToken cancellationToken)
    {
        foreach (var id in await devices.RevokedIdsAsync(cancellationToken))
        {
            var purged = tickets.PurgeDevice(id);
            if (await connections.CloseDeviceAsync(id, "this device was revoked by the home server's owner") > 0) logger.DeviceRevoked(id, purged);
        }
    }
}
