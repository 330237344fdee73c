using System.Security.Cryptography;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Home.Trust;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Handlers;

/// <summary>
/// enroll: a one-time code and a device key become a device certificate. Failed attempts are limited
/// per source address (<see cref="EnrollmentLimiter"/>); an address that must wait is refused without
/// its code being looked at. Refusals are audited a few at a time
/// (<see cref="DeviceRegistry.AuditStrangerRefusalAsync"/>).
/// </summary>
public sealed class EnrollmentHandler(DeviceRegistry devices, HomeIdentity identity, ILogger logger, EnrollmentLimiter? limiter = null, string? owner = null)
{
    private readonly EnrollmentLimiter _limiter = limiter ?? new EnrollmentLimiter();

    /// <summary>
    /// One redemption at a time for this home (each costs a PBKDF2 hash of 100,000 rounds): attempts sent at
    /// once queue here, and each looks at the limiter again once it has its turn, so a peer that pipelines
    /// many wrong codes pays for the free failures only, and the rest are refused unhashed. Per home, so
    /// one owner's strangers on a hosted node do not queue another owner's enrollment.
    /// </summary>
    private readonly SemaphoreSlim _redeeming = new(1, 1);

    /// <summary>How long an attempt waits for its turn before it is told the home server is busy (a stranger's channel closes after 10 s).</summary>
    public static readonly TimeSpan TurnWait = TimeSpan.FromSeconds(5);

    public async Task<HandlerResult> EnrollAsync(EnrollRequest request, System.Net.IPAddress peer, CancellationToken cancellationToken)
    {
        // An address that must wait is refused before it queues (and again in turn, for failures meanwhile).
        if (await AddressRefusalAsync(peer) is { } refused) return refused;
        if (!await _redeeming.WaitAsync(TurnWait, cancellationToken))
        {
            return HandlerResult.Error(ErrorCode.EnrollmentRefused, "the home server is busy checking other enrollment codes; try again in a few seconds");
        }
        try
        {
            return await EnrollInTurnAsync(request, peer, cancellationToken);
        }
        finally
        {
            _redeeming.Release();
        }
    }

    private async Task<HandlerResult?> AddressRefusalAsync(System.Net.IPAddress peer)
    {
        var addressKey = EnrollmentLimiter.AddressKey(peer);
        if (_limiter.WaitFor(addressKey) is not { } addressWait) return null;
        await devices.AuditStrangerRefusalAsync(addressKey, "enroll", $"refused: too many failures from {peer}");
        return HandlerResult.Error(ErrorCode.EnrollmentRefused, AddressWaitSentence(addressWait));
    }

    private async Task<HandlerResult> EnrollInTurnAsync(EnrollRequest request, System.Net.IPAddress peer, CancellationToken cancellationToken)
    {
        var addressKey = EnrollmentLimiter.AddressKey(peer);
        if (await AddressRefusalAsync(peer) is { } refused) return refused;
        try
        {
            using var probe = ECDsa.Create();
            probe.ImportSubjectPublicKeyInfo(request.DeviceSpki, out _);
        }
        catch (Exception e) when (e is CryptographicException or PlatformNotSupportedException)
        {
            // PlatformNotSupportedException: a key on a curve this platform lacks (from the peer's SPKI).
            return HandlerResult.Error(ErrorCode.BadKey, "the device public key is not a valid EC key");
        }
        var (outcome, name) = await devices.RedeemCodeAsync(request.Secret, cancellationToken);
        if (outcome != EnrollmentOutcome.Enrolled)
        {
            _limiter.Failed(addressKey);
            await devices.AuditStrangerRefusalAsync(addressKey, "enroll", $"refused: {outcome} from {peer}");
            return HandlerResult.Error(ErrorCode.EnrollmentRefused, outcome switch
            {
                EnrollmentOutcome.ExpiredCode => owner is null
                    ? "the enrollment code has expired; ask for a new one with 'daiko home device add'"
                    : "the enrollment code has expired; ask the site's operator for a new one",
                EnrollmentOutcome.ReplacedCode => owner is null
                    ? "the enrollment code was replaced by a newer one for the same device; use the newest code from 'daiko home device add'"
                    : "the enrollment code was replaced by a newer one for the same device; use the newest code from the site's operator",
                EnrollmentOutcome.UsedCode => "the enrollment code was already used",
                EnrollmentOutcome.TooManyAttempts => "too many wrong enrollment codes; wait a minute",
                _ => "the enrollment code is not valid",
            });
        }
        var device = await devices.RegisterAsync(name!, request.DeviceSpki, cancellationToken);
        using var certificate = identity.IssueDeviceCertificate(device.Id, request.DeviceSpki, owner);
        await devices.AuditAsync(device.Id, "enroll", null, null, "enrolled");
        logger.DeviceEnrolled(device.Name, device.Id);
        return new EnrolledReply(device.Id, device.Name, certificate.RawData, identity.Certificate.RawData);
    }

    /// <summary>What an address that must wait is told (a hosted node's stranger path says the same).</summary>
    public static string AddressWaitSentence(TimeSpan wait) => $"too many wrong enrollment codes from this address; try again in {(int)Math.Ceiling(wait.TotalSeconds)} s";
}
