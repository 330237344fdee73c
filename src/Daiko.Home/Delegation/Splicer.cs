using System.Buffers;
using Daiko.Home.Hosting;
using Daiko.Protocol;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Delegation;

/// <summary>How a splice ended: the bytes each way and why.</summary>
public sealed record SpliceResult(long BytesUp, long BytesDown, string Reason);

/// <summary>
/// Pumps bytes between a relay channel and the market's stream until either side ends. It owns the
/// splices it starts: each one's result is logged, and <see cref="DisposeAsync"/> waits for them all.
/// A device has at most <paramref name="maxPerDevice"/> splices open or being set up
/// (<see cref="Reserve"/>): each holds a connection to a market and cost a card signature.
/// </summary>
public sealed class Splicer(ILogger logger, TimeSpan idleLimit, int maxPerDevice = Splicer.DefaultMaxPerDevice) : IAsyncDisposable
{
    public const int DefaultMaxPerDevice = 64;

    private readonly TaskSet _running = new();
    private readonly Lock _gate = new();
    private readonly Dictionary<string, int> _places = new(StringComparer.Ordinal);

    public int Running => _running.Count;

    /// <summary>
    /// A place for one more splice of <paramref name="deviceId"/>, taken before the market is dialled;
    /// refused when the device holds <c>maxPerDevice</c> already. Disposing the place gives it back,
    /// unless a splice started with it: then the splice's end does.
    /// </summary>
    public Place Reserve(string deviceId)
    {
        lock (_gate)
        {
            var held = _places.GetValueOrDefault(deviceId);
            if (held >= maxPerDevice)
            {
                throw new Policy.PolicyRefusedException(Policy.PolicyRule.OpenRelays,
                    $"this device has {held} relayed or handed-over sessions open, the most the home server keeps for one device; close one first");
            }
            _places[deviceId] = held + 1;
        }
        return new Place(this, deviceId);
    }

    /// <summary>Splices the device holds or is setting up.</summary>
    public int HeldBy(string deviceId)
    {
        lock (_gate) return _places.GetValueOrDefault(deviceId);
    }

    private void GiveBack(string deviceId)
    {
        lock (_gate)
        {
            if (_places[deviceId] == 1) _places.Remove(deviceId);
            else _places[deviceId]--;
        }
    }

    /// <summary>One device's place for a splice (<see cref="Reserve"/>).</summary>
    public sealed class Place(Splicer owner, string deviceId) : IDisposable
    {
        private int _state; // 0 held, 1 handed to a splice, 2 given back

        internal bool HandOver() => Interlocked.CompareExchange(ref _state, 1, 0) == 0;

        internal void End()
        {
            if (Interlocked.Exchange(ref _state, 2) != 2) owner.GiveBack(deviceId);
        }

        public void Dispose()
        {
            if (Interlocked.CompareExchange(ref _state, 2, 0) == 0) owner.GiveBack(deviceId);
        }
    }

    /// <summary>
    /// Starts splicing <paramref name="relay"/> and <paramref name="market"/>; both are disposed at the end.
    /// <paramref name="stop"/> (the device's session ending) cuts the splice at once. The device's
    /// <paramref name="place"/>, if given, is held until the splice ends.
    /// </summary>
    public void Start(RelayStream relay, Stream market, CancellationToken stop = default, Place? place = null)
    {
        var owned = place is not null && place.HandOver() ? place : null;
        _running.Track(RunAsync(relay, market, stop, owned));
    }

    private async Task RunAsync(RelayStream relay, Stream market, CancellationToken stop, Place? place)
    {
        try
        {
            var result = await SpliceAsync(relay, market, stop, idleLimit).ConfigureAwait(false);
            logger.SpliceEnded(relay.Id, result.BytesUp, result.BytesDown, result.Reason);
        }
        finally
        {
            place?.End();
        }
    }

    /// <summary>
    /// Splices until either side ends, <paramref name="stop"/>, or no byte has moved either way for
    /// <paramref name="idleLimit"/>; never throws for what a network does.
    /// </summary>
    public static async Task<SpliceResult> SpliceAsync(RelayStream relay, Stream market, CancellationToken stop = default, TimeSpan? idleLimit = null)
    {
        var limit = idleLimit ?? Timeout.InfiniteTimeSpan;
        using var done = CancellationTokenSource.CreateLinkedTokenSource(stop);
        // Each byte moved pushes the idle deadline back; before the pumps end only the deadline or stop cancels.
        void Moved()
        {
            if (limit != Timeout.InfiniteTimeSpan) done.CancelAfter(limit);
        }
        Moved();
        var up = PumpAsync(relay, market, Moved, done.Token);
        var down = PumpAsync(market, relay, Moved, done.Token);
        var first = await Task.WhenAny(up, down).ConfigureAwait(false);
        var idle = first.Result.Cancelled && !stop.IsCancellationRequested;
        await done.CancelAsync().ConfigureAwait(false);
        // A market stream that failed or was cut (no close_notify) reaches the terminal as a cut relay.
        // So does a splice cut because the device's session ended or because it sat idle.
        if ((first == down && !down.Result.Clean) || stop.IsCancellationRequested || idle) await relay.AbortAsync().ConfigureAwait(false);
        await relay.DisposeAsync().ConfigureAwait(false);
        await market.DisposeAsync().ConfigureAwait(false);
        var upResult = await up.ConfigureAwait(false);
        var downResult = await down.ConfigureAwait(false);
        if (stop.IsCancellationRequested) return new SpliceResult(upResult.Bytes, downResult.Bytes, "the device's session ended, or its policy no longer allows what ran");
        if (idle) return new SpliceResult(upResult.Bytes, downResult.Bytes, $"no byte either way for {limit.TotalSeconds:0.#} s");
        return new SpliceResult(upResult.Bytes, downResult.Bytes, first == up ? "terminal side: " + upResult.Reason : "market side: " + downResult.Reason);
    }

    private readonly record struct PumpResult(long Bytes, string Reason, bool Clean, bool Cancelled);

    private static async Task<PumpResult> PumpAsync(Stream from, Stream to, Action moved, CancellationToken cancellationToken)
    {
        // Pooled (the two pumps of a splice would otherwise leave 16 KB of garbage each, 32 KB a
        // session), and wiped on return: in a relay it carries the session's plaintext.
        var buffer = ArrayPool<byte>.Shared.Rent(16384);
        long total = 0;
        try
        {
            while (true)
            {
                var n = await from.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                if (n == 0) return new PumpResult(total, "closed", true, false);
                moved();
                await to.WriteAsync(buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                await to.FlushAsync(cancellationToken).ConfigureAwait(false);
                total += n;
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or Daiko.Tls.TlsException or ControlErrorException)
        {
            var cancelled = cancellationToken.IsCancellationRequested;
            return new PumpResult(total, cancelled ? "the other side ended" : e.Message, false, cancelled);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
        }
    }

    public async ValueTask DisposeAsync() => await _running.WhenAll().ConfigureAwait(false);
}
