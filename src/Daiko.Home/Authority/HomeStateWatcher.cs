using Daiko.Cards;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Authority;

/// <summary>
/// One truth for the card's state on a running home server: every poll (a quarter second) it picks up
/// what owner commands in other processes changed — <c>home card unblock</c>, <c>home cert
/// import|import-p12</c> (<see cref="HomeCard.Refresh"/>), <c>home device revoke</c> — and sweeps the
/// device sessions (idle timers). A change that ends readiness ends every device's session and live
/// work; a revocation ends that device's. A device is judged by whether it is still enrolled, not by its
/// revoked row (enrolling the name again removes that row, maybe before this server looked): every
/// session in the store, and whatever this server holds, of a device no longer enrolled is ended.
/// </summary>
public sealed class HomeStateWatcher(IHomeCard card, DeviceAuthority authority, AssistGrants grants, DeviceRegistry devices, TimeProvider time, ILogger logger)
{
    /// <summary>Looks every <paramref name="poll"/>; a file or the store caught mid-write, or the store unreachable, is read again at the next poll.</summary>
    public Task RunAsync(TimeSpan poll, CancellationToken cancellationToken) =>
        new BackgroundLook("reading the home card's state and the device sessions", PollAsync,
            e => e is IOException or System.Data.Common.DbException or System.Text.Json.JsonException or UnauthorizedAccessException, time, logger).RunAsync(poll, cancellationToken);

    /// <summary>One look at the card's files and the store.</summary>
    public async Task PollAsync(CancellationToken cancellationToken)
    {
        if (card.Refresh()) await authority.EndAllAsync("the home card changed (unblocked, disabled or given a new key)", cancellationToken);
        foreach (var id in await devices.NoLongerEnrolledAsync(await authority.HeldDevicesAsync(cancellationToken), cancellationToken))
        {
            grants.Revoke(id);
            await authority.EndAsync(id, "revoked", cancellationToken);
        }
        await authority.SweepAsync(cancellationToken);
    }
}
