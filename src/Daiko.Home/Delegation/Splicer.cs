using Daiko.Home.Hosting;
using Daiko.Protocol;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Delegation;

/// <summary>How a splice ended: the bytes each way and why.</summary>
public sealed record SpliceResult(long BytesUp, long BytesDown, string Reason);

/// <summary>
/// Pumps bytes between a relay channel and the market's stream until either side ends. It owns the
/// splices it starts: each one's result is logged, and <see cref="DisposeAsync"/> waits for them all.
/// </summary>
public sealed class Splicer(ILogger logger) : IAsyncDisposable
{
    private readonly TaskSet _running = new();

    public int Running => _running.Count;

    /// <summary>
    /// Starts splicing <paramref name="relay"/> and <paramref name="market"/>; both are disposed at the end.
    /// <paramref name="stop"/> (the device's session ending) cuts the splice at once.
    /// </summary>
    public void Start(RelayStream relay, Stream market, CancellationToken stop = default)
    {
        _running.Track(RunAsync(relay, market, stop));
    }

    private async Task RunAsync(RelayStream relay, Stream market, CancellationToken stop)
    {
        var result = await SpliceAsync(relay, market, stop).ConfigureAwait(false);
        logger.SpliceEnded(relay.Id, result.BytesUp, result.BytesDown, result.Reason);
    }

    /// <summary>Splices until either side ends, or <paramref name="stop"/>; never throws for what a network does.</summary>
    public static async Task<SpliceResult> SpliceAsync(RelayStream relay, Stream market, CancellationToken stop = default)
    {
        using var done = CancellationTokenSource.CreateLinkedTokenSource(stop);
        var up = PumpAsync(relay, market, done.Token);
        var down = PumpAsync(market, relay, done.Token);
        var first = await Task.WhenAny(up, down).ConfigureAwait(false);
        await done.CancelAsync().ConfigureAwait(false);
        // A market stream that failed or was cut (no close_notify) reaches the terminal as a cut relay.
        // So does a splice cut because the device's session ended.
        if ((first == down && !down.Result.Clean) || stop.IsCancellationRequested) await relay.AbortAsync().ConfigureAwait(false);
        await relay.DisposeAsync().ConfigureAwait(false);
        await market.DisposeAsync().ConfigureAwait(false);
        var (upBytes, upReason, _) = await up.ConfigureAwait(false);
        var (downBytes, downReason, _) = await down.ConfigureAwait(false);
        if (stop.IsCancellationRequested) return new SpliceResult(upBytes, downBytes, "the device's session ended");
        return new SpliceResult(upBytes, downBytes, first == up ? "terminal side: " + upReason : "market side: " + downReason);
    }

    private static async Task<(long Bytes, string Reason, bool Clean)> PumpAsync(Stream from, Stream to, CancellationToken cancellationToken)
    {
        var buffer = new byte[16384];
        long total = 0;
        try
        {
            while (true)
            {
                var n = await from.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                if (n == 0) return (total, "closed", true);
                await to.WriteAsync(buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                await to.FlushAsync(cancellationToken).ConfigureAwait(false);
                total += n;
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or Daiko.Tls.TlsException or ControlErrorException)
        {
            return (total, e is OperationCanceledException ? "the other side ended" : e.Message, false);
        }
    }

    public async ValueTask DisposeAsync() => await _running.WhenAll().ConfigureAwait(false);
}
