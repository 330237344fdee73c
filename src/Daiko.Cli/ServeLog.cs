using Microsoft.Extensions.Logging;

namespace Daiko.Cli;

/// <summary>The lines 'daiko home serve' logs about the process itself: reloads and shutdown (never a secret).</summary>
internal static partial class ServeLog
{
    [LoggerMessage(120, LogLevel.Warning, "the home card holds no certificate yet: every delegation is refused until the owner imports the one issued for {Home}/user.csr ('daiko home cert import --home {Home} --cert PEM')")]
    public static partial void NoCertificateYet(this ILogger logger, string home);

    [LoggerMessage(101, LogLevel.Warning, "--allow-private-markets: every device may reach markets on loopback and private addresses")]
    public static partial void PrivateMarketsAllowed(this ILogger logger);

    [LoggerMessage(107, LogLevel.Warning, "--proxy-protocol: every connection must begin with a PROXY protocol v2 header, whose client address is believed from {Balancers} only (--proxy-from); any other peer is refused")]
    public static partial void ProxyProtocolTrusted(this ILogger logger, string balancers);

    [LoggerMessage(108, LogLevel.Warning, "--fetch-missing-intermediates: an intermediate a market leaves out is fetched from its http AIA URL (public addresses only, 2 s, 64 KiB, cached)")]
    public static partial void IntermediatesFetched(this ILogger logger);

    [LoggerMessage(102, LogLevel.Information, "home server stopping; the home card is locked")]
    public static partial void Stopping(this ILogger logger);

    [LoggerMessage(103, LogLevel.Information, "configuration reloaded: console sessions {SessionMinutes} min, links {LinkMinutes} min, shutdown {ShutdownSeconds} s; new devices get markets {Markets}, modes {Modes}; {TrustRoots} trust root(s){Restart}")]
    public static partial void Reloaded(this ILogger logger, int sessionMinutes, int linkMinutes, double shutdownSeconds, string markets, string modes, int trustRoots, string restart);

    [LoggerMessage(104, LogLevel.Warning, "configuration NOT reloaded, the previous one stays: {Reason}; {TrustRoots} trust root(s) reloaded")]
    public static partial void NotReloaded(this ILogger logger, string reason, int trustRoots);

    [LoggerMessage(105, LogLevel.Warning, "work still in flight was cut at shutdown")]
    public static partial void WorkCut(this ILogger logger);

    [LoggerMessage(106, LogLevel.Information, "home server stopped in {Seconds:0.00} s")]
    public static partial void Stopped(this ILogger logger, double seconds);
}
