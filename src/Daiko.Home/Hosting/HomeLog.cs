using Microsoft.Extensions.Logging;

namespace Daiko.Home.Hosting;

/// <summary>Every line the home server logs (source-generated; never a PIN, key or secret).</summary>
internal static partial class HomeLog
{
    [LoggerMessage(1, LogLevel.Information, "control handshake failed from {Address}: {Kind}: {Reason}{Unwritten}")]
    public static partial void HandshakeFailed(this ILogger logger, string address, string kind, string reason, string unwritten);

    [LoggerMessage(2, LogLevel.Information, "device '{Name}' ({DeviceId}) enrolled")]
    public static partial void DeviceEnrolled(this ILogger logger, string name, string deviceId);

    [LoggerMessage(3, LogLevel.Information, "device {DeviceId} revoked: channel closed, {Purged} cached secrets purged")]
    public static partial void DeviceRevoked(this ILogger logger, string deviceId, int purged);

    [LoggerMessage(4, LogLevel.Information, "fetched {Count} ticket(s) ahead of need for {Market}")]
    public static partial void TicketsFetchedAhead(this ILogger logger, int count, string market);

    [LoggerMessage(5, LogLevel.Information, "fetching tickets ahead for {Market} failed: {Reason}")]
    public static partial void TicketsFetchAheadFailed(this ILogger logger, string market, string reason);

    [LoggerMessage(6, LogLevel.Error, "a control request '{Type}' failed")]
    public static partial void HandlerFailed(this ILogger logger, string type, Exception exception);

    [LoggerMessage(27, LogLevel.Warning, "{What} failed: {Reason} ({Streak})")]
    public static partial void LookFailed(this ILogger logger, string what, string reason, string streak);

    [LoggerMessage(28, LogLevel.Error, "{What} failed unexpectedly (tried again at every poll; the last good state stays in use)")]
    public static partial void LookFailedUnexpectedly(this ILogger logger, string what, Exception exception);

    [LoggerMessage(26, LogLevel.Warning, "the audit line of a refused '{Action}' could not be stored (it is in this log): {Reason}")]
    public static partial void AuditLineNotStored(this ILogger logger, string action, string reason);

    [LoggerMessage(25, LogLevel.Information, "{What} works again, after {Failures} failure(s) since {Since} UTC")]
    public static partial void LookWorksAgain(this ILogger logger, string what, int failures, string since);

    [LoggerMessage(8, LogLevel.Information, "a terminal without control protocol {Expected} was refused (it offered '{Offered}'){Unwritten}")]
    public static partial void ProtocolVersionRefused(this ILogger logger, string expected, string offered, string unwritten);

    [LoggerMessage(9, LogLevel.Debug, "relay {Relay} ended: {Up} bytes up, {Down} bytes down ({Reason})")]
    public static partial void SpliceEnded(this ILogger logger, long relay, long up, long down, string reason);

    [LoggerMessage(10, LogLevel.Warning, "a periodic payment report failed: {Reason}")]
    public static partial void ReportFailed(this ILogger logger, string reason);

    [LoggerMessage(11, LogLevel.Error, "a background task of the home server failed")]
    public static partial void BackgroundFailed(this ILogger logger, Exception exception);

    [LoggerMessage(12, LogLevel.Information, "device {DeviceId}: {Type} refused ({Code}): {Message}")]
    public static partial void RequestRefused(this ILogger logger, string deviceId, string type, string code, string message);

    [LoggerMessage(13, LogLevel.Information, "device {DeviceId}: {Action}{Market}{Mode}: {Outcome}")]
    public static partial void Audited(this ILogger logger, string deviceId, string action, string market, string mode, string outcome);

    [LoggerMessage(14, LogLevel.Warning, "the purse is not sealed: {Reason}")]
    public static partial void PurseNotSealed(this ILogger logger, string reason);

    [LoggerMessage(16, LogLevel.Information, "device {Name}: policy changed, its agents told to drop their ticket stock")]
    public static partial void PolicyChanged(this ILogger logger, string name);

    [LoggerMessage(65, LogLevel.Information, "device {Name}: its policy no longer has a market or mode it had, so what it had running here (relays, handed-over sessions, an assist grant) was ended")]
    public static partial void PolicyCutLiveWork(this ILogger logger, string name);

    [LoggerMessage(60, LogLevel.Information, "a connection from {Address} was refused: {Reason}{Unwritten}")]
    public static partial void ProxyHeaderRefused(this ILogger logger, string address, string reason, string unwritten);

    [LoggerMessage(18, LogLevel.Warning, "device {DeviceId}: its control channel broke: {Reason}")]
    public static partial void ControlChannelBroke(this ILogger logger, string deviceId, string reason);

    [LoggerMessage(17, LogLevel.Warning, "ending the device sessions at shutdown failed (they end at the next start): {Reason}")]
    public static partial void SessionsNotEnded(this ILogger logger, string reason);

    [LoggerMessage(19, LogLevel.Information, "{Market} {Verdict} a resumption with psk_ke alone: terminals are told so with each ticket")]
    public static partial void PskKeChecked(this ILogger logger, string market, string verdict);

    [LoggerMessage(21, LogLevel.Warning, "pruning the audit log failed (tried again within the hour): {Reason}")]
    public static partial void AuditPruneFailed(this ILogger logger, string reason);

    [LoggerMessage(22, LogLevel.Warning, "the audit log is at its line limit ({MaxLines}): {Count} line(s) younger than {Days} day(s) were removed; a device writing many lines pushes older ones out (raise --audit-max-lines, or look for that device)")]
    public static partial void AuditAtItsLineLimit(this ILogger logger, long count, int days, long maxLines);

    [LoggerMessage(23, LogLevel.Warning, "the store could not flush its bookkeeping to the disk (audit lines, last use: committed, tried again in a second): {Reason}")]
    public static partial void BookkeepingFlushFailed(this ILogger logger, string reason);

    [LoggerMessage(20, LogLevel.Information, "checking whether {Market} resumes with psk_ke failed: {Reason}")]
    public static partial void PskKeCheckFailed(this ILogger logger, string market, string reason);
}
