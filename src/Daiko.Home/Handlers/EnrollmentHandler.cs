using System.Security.Cryptography;
using Daiko.Home.Devices;
using Daiko.Home.Hosting;
using Daiko.Home.Server;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Handlers;

/// <summary>enroll: a one-time code and a device key become a device certificate.</summary>
public sealed class EnrollmentHandler(DeviceRegistry devices, HomeIdentity identity, ILogger logger)
{
    public async Task<HandlerResult> EnrollAsync(EnrollRequest request, CancellationToken cancellationToken)
    {
        try
        {
            using var probe = ECDsa.Create();
            probe.ImportSubjectPublicKeyInfo(request.DeviceSpki, out _);
        }
        catch (CryptographicException)
        {
            return HandlerResult.Error(ErrorCode.BadKey, "the device public key is not a valid EC key");
        }
        var (outcome, name) = await devices.RedeemCodeAsync(request.Secret, cancellationToken);
        if (outcome != EnrollmentOutcome.Enrolled)
        {
            await devices.AuditAsync(null, "enroll", null, null, $"refused: {outcome}");
            return HandlerResult.Error(ErrorCode.EnrollmentRefused, outcome switch
            {
                EnrollmentOutcome.ExpiredCode => "the enrollment code has expired; ask for a new one with 'daiko home device add'",
                EnrollmentOutcome.UsedCode => "the enrollment code was already used",
                EnrollmentOutcome.TooManyAttempts => "too many wrong enrollment codes; wait a minute",
                _ => "the enrollment code is not valid",
            });
        }
        var device = await devices.RegisterAsync(name!, request.DeviceSpki, cancellationToken);
        using var certificate = identity.IssueDeviceCertificate(device.Id, request.DeviceSpki);
        await devices.AuditAsync(device.Id, "enroll", null, null, "enrolled");
        logger.DeviceEnrolled(device.Name, device.Id);
        return new EnrolledReply(device.Id, device.Name, certificate.RawData, identity.Certificate.RawData);
    }
}
