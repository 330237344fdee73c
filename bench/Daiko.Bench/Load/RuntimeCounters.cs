using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Globalization;
using Microsoft.Diagnostics.NETCore.Client;
using Microsoft.Diagnostics.Tracing;

namespace Daiko.Bench.Load;

/// <summary>
/// Another .NET process's runtime counters (the <c>System.Runtime</c> event counters that
/// <c>dotnet-counters</c> shows: GC heap and generation sizes, committed GC memory, fragmentation,
/// thread-pool threads, methods jitted), read over its diagnostics port once a second. The latest value
/// of each is kept; <see cref="Latest"/> is NaN until the first one arrives.
/// </summary>
public sealed class RuntimeCounters : IAsyncDisposable
{
    private readonly EventPipeReader _reader;
    private readonly ConcurrentDictionary<string, double> _latest = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (double Sum, int Count)> _increments = new(StringComparer.Ordinal);

    private RuntimeCounters(int pid)
    {
        var providers = new[]
        {
            new EventPipeProvider("System.Runtime", EventLevel.Informational, (long)EventKeywords.None,
                new Dictionary<string, string> { ["EventCounterIntervalSec"] = "1" }),
        };
        _reader = new EventPipeReader(pid, providers, source => source.Dynamic.All += Read, "runtime counters").Start();
    }

    /// <summary>Starts reading <paramref name="pid"/>'s counters, or says why it cannot and returns null (the soak then reports /proc figures only).</summary>
    public static RuntimeCounters? TryStart(int pid)
    {
        try
        {
            return new RuntimeCounters(pid);
        }
        catch (Exception e) when (e is DiagnosticsClientException or IOException or TimeoutException or UnauthorizedAccessException)
        {
            Console.WriteLine($"soak: the home server's runtime counters cannot be read ({e.Message}); GC figures are left out");
            return null;
        }
    }

    /// <summary>The latest value of a counter by its <c>System.Runtime</c> name (e.g. <c>gc-committed</c>, in the counter's own unit).</summary>
    public double Latest(string name) => _latest.TryGetValue(name, out var value) ? value : double.NaN;

    private void Read(TraceEvent e)
    {
        if (e.EventName != "EventCounters" || e.PayloadValue(0) is not IDictionary<string, object> outer) return;
        if (!outer.TryGetValue("Payload", out var inner) || inner is not IDictionary<string, object> payload) return;
        if (!payload.TryGetValue("Name", out var name) || name is not string counter) return;
        var value = payload.TryGetValue("Mean", out var mean) ? mean : payload.TryGetValue("Increment", out var increment) ? increment : null;
        if (value is null) return;
        var number = Convert.ToDouble(value, CultureInfo.InvariantCulture);
        _latest[counter] = number;
        if (payload.ContainsKey("Increment")) _increments.AddOrUpdate(counter, (number, 1), (_, seen) => (seen.Sum + number, seen.Count + 1));
    }

    /// <summary>The sum of a counting counter's increments so far (e.g. <c>alloc-rate</c>, bytes a second) and how many intervals they cover.</summary>
    public (double Sum, int Count) Increments(string name) => _increments.TryGetValue(name, out var seen) ? seen : (0, 0);

    /// <summary>
    /// Runs <paramref name="row"/> and adds what the home server allocated per session over it. The
    /// counters report each second's bytes a second late, so the row starts after the last report of
    /// what came before and ends after the report of its own last second: the bytes between are the
    /// row's (and the idle server's, a few KB a second).
    /// </summary>
    public async Task<LoadRun> MeasuredAsync(Func<Task<LoadRun>> row)
    {
        var reported = TimeSpan.FromSeconds(1.2);
        await Task.Delay(reported);
        var before = Increments("alloc-rate");
        var run = await row();
        await Task.Delay(reported);
        var after = Increments("alloc-rate");
        return after.Count == before.Count || run.Sessions == 0 ? run
            : run with { HomeAllocKbPerSession = (after.Sum - before.Sum) / run.Sessions / 1024 };
    }

    public ValueTask DisposeAsync() => _reader.DisposeAsync();
}
