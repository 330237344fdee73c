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

/// <summary>
/// The loggers of one owner's parts on a node: every line names the owner it is about (plain lines start with
/// "owner 'NAME': ", JSON lines carry an Owner field), since one node's log holds every owner's lines and device names
/// such as "phone" repeat from owner to owner.
/// </summary>
internal sealed class OwnerLoggerFactory(ILoggerFactory node, string owner) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new OwnerLogger(node.CreateLogger(categoryName), owner);

    public void AddProvider(ILoggerProvider provider) => node.AddProvider(provider);

    /// <summary>Nothing of its own: the node's factory is the node's to dispose.</summary>
    public void Dispose()
    {
    }

    private sealed class OwnerLogger(ILogger inner, string owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!inner.IsEnabled(logLevel)) return;
            IReadOnlyList<KeyValuePair<string, object?>> fields =
                [new("Owner", owner), .. state as IReadOnlyList<KeyValuePair<string, object?>> ?? []];
            inner.Log(logLevel, eventId, fields, exception, (_, e) => $"owner '{owner}': {formatter(state, e)}");
        }
    }
}
