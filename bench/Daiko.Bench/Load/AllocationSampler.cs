using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Globalization;
using Microsoft.Diagnostics.NETCore.Client;
using Microsoft.Diagnostics.Tracing;
using Microsoft.Diagnostics.Tracing.Parsers;

namespace Daiko.Bench.Load;

/// <summary>
/// What another .NET process allocates, by type: the runtime's allocation ticks (one about every
/// 100 KB allocated, naming the type that crossed it) read over its diagnostics port. A sample, not
/// a count: good for finding the types that make most of the garbage (<c>load --only … --alloc-types</c>).
/// </summary>
public sealed class AllocationSampler : IAsyncDisposable
{
    private readonly EventPipeReader _reader;
    private readonly ConcurrentDictionary<string, long> _bytes = new(StringComparer.Ordinal);

    public AllocationSampler(int pid)
    {
        var providers = new[]
        {
            new EventPipeProvider("Microsoft-Windows-DotNETRuntime", EventLevel.Verbose, (long)ClrTraceEventParser.Keywords.GC),
        };
        _reader = new EventPipeReader(pid, providers,
            source => source.Clr.GCAllocationTick += e => _bytes.AddOrUpdate(e.TypeName ?? "?", e.AllocationAmount64, (_, b) => b + e.AllocationAmount64),
            "allocation ticks").Start();
    }

    /// <summary>The types that crossed the most allocation ticks, with their share of all sampled bytes.</summary>
    public IEnumerable<string> Top(int count)
    {
        var total = Math.Max(1, _bytes.Values.Sum());
        return _bytes.OrderByDescending(kv => kv.Value).Take(count)
            .Select(kv => string.Create(CultureInfo.InvariantCulture, $"{100.0 * kv.Value / total,5:0.0} %  {kv.Value / 1024.0 / 1024,8:0.0} MB  {kv.Key}"));
    }

    public ValueTask DisposeAsync() => _reader.DisposeAsync();
}
