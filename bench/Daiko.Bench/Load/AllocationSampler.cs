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
/// The exceptions it throws are counted too (by type and message: each one costs a stack trace's frames).
/// </summary>
public sealed class AllocationSampler : IAsyncDisposable
{
    private readonly EventPipeReader _reader;
    private readonly ConcurrentDictionary<string, long> _bytes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _exceptions = new(StringComparer.Ordinal);

    public AllocationSampler(int pid)
    {
        var providers = new[]
        {
            new EventPipeProvider("Microsoft-Windows-DotNETRuntime", EventLevel.Verbose, (long)(ClrTraceEventParser.Keywords.GC | ClrTraceEventParser.Keywords.Exception)),
        };
        _reader = new EventPipeReader(pid, providers, source =>
        {
            source.Clr.GCAllocationTick += e => _bytes.AddOrUpdate(e.TypeName ?? "?", e.AllocationAmount64, (_, b) => b + e.AllocationAmount64);
            source.Clr.ExceptionStart += e =>
            {
                var message = e.ExceptionMessage ?? "";
                _exceptions.AddOrUpdate($"{e.ExceptionType}: {(message.Length > 100 ? message[..100] + "…" : message)}", 1, (_, n) => n + 1);
            };
            // Where they are caught (the first frame with a handler for each): what to read to find why they are thrown.
            source.Clr.ExceptionCatchStart += e => _exceptions.AddOrUpdate($"  caught in {e.MethodName}", 1, (_, n) => n + 1);
        }, "allocation ticks").Start();
    }

    /// <summary>The types that crossed the most allocation ticks, with their share of all sampled bytes.</summary>
    public IEnumerable<string> Top(int count)
    {
        var total = Math.Max(1, _bytes.Values.Sum());
        return _bytes.OrderByDescending(kv => kv.Value).Take(count)
            .Select(kv => string.Create(CultureInfo.InvariantCulture, $"{100.0 * kv.Value / total,5:0.0} %  {kv.Value / 1024.0 / 1024,8:0.0} MB  {kv.Key}"));
    }

    /// <summary>The exceptions thrown most often (first-chance, caught or not), with their counts.</summary>
    public IEnumerable<string> TopExceptions(int count) =>
        _exceptions.OrderByDescending(kv => kv.Value).Take(count)
            .Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Value,8}  {kv.Key}"));

    public ValueTask DisposeAsync() => _reader.DisposeAsync();
}
