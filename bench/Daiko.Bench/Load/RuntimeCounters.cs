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
        if (value is not null) _latest[counter] = Convert.ToDouble(value, CultureInfo.InvariantCulture);
    }

    public ValueTask DisposeAsync() => _reader.DisposeAsync();
}
