using Microsoft.Extensions.Logging;

namespace Daiko.Host;

/// <summary>Every line a hosted node logs of its own (never a PIN, key or secret).</summary>
internal static partial class HostLog
{
    [LoggerMessage(101, LogLevel.Information, "owner '{Owner}' loaded on this node")]
    public static partial void OwnerLoaded(this ILogger logger, string owner);

    [LoggerMessage(102, LogLevel.Warning, "listening for changes failed ({Reason}); listening again")]
    public static partial void ChangesLost(this ILogger logger, string reason);

    [LoggerMessage(103, LogLevel.Warning, "applying a change of {Schema} failed: {Reason}")]
    public static partial void ChangeFailed(this ILogger logger, string schema, string reason);

    [LoggerMessage(104, LogLevel.Information, "a device certificate names owner '{Owner}', who is not in this deployment")]
    public static partial void UnknownOwner(this ILogger logger, string owner);

    [LoggerMessage(106, LogLevel.Information, "owner '{Owner}' unloaded from this node: no device connected for {IdleSeconds} s")]
    public static partial void OwnerUnloaded(this ILogger logger, string owner, long idleSeconds);

    [LoggerMessage(107, LogLevel.Warning, "unloading owner '{Owner}' failed: {Reason}")]
    public static partial void OwnerUnloadFailed(this ILogger logger, string owner, string reason);

    [LoggerMessage(105, LogLevel.Information, "an enrollment code from {Peer} names no owner of this deployment ({Unwritten} such refusals not logged before this one)")]
    public static partial void UnknownCode(this ILogger logger, string peer, int unwritten);
}
