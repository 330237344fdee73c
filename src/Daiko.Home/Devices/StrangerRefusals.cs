namespace Daiko.Home.Devices;

/// <summary>
/// Which refusals of peers that have not authenticated (a wrong enrollment code, a spent console link)
/// are written to the audit log. Each is a durable write, and a stranger must not make the home server
/// write at will: a source (an address, an IPv6 /64) gets at most one audit line per
/// <see cref="Window"/>, and all sources together at most <see cref="MaxLinesPerWindow"/>. A line that
/// is written says how many refusals were not written before it (the count lives in memory: a restart
/// loses what was not yet written). Only sources written to in the last two windows are remembered, so memory
/// stays within twice <see cref="MaxLinesPerWindow"/> entries however many sources a flood uses. The
/// server's log lines about strangers are limited the same way, with a window and a count of their own.
/// </summary>
public sealed class StrangerRefusals(TimeProvider? time = null, TimeSpan? window = null, int maxLinesPerWindow = StrangerRefusals.MaxLinesPerWindow)
{
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    public const int MaxLinesPerWindow = 10;

    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly TimeSpan _window = window ?? Window;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, (DateTimeOffset WrittenAt, int Unwritten)> _sources = new(StringComparer.Ordinal);
    private DateTimeOffset _windowStart = DateTimeOffset.MinValue;
    private int _linesInWindow;
    private int _unwrittenElsewhere;

    /// <summary>
    /// Notes one refusal of <paramref name="source"/>: whether to write it, and how many refusals went
    /// unwritten before it (of this source, and of sources that found the window's lines spent).
    /// </summary>
    public (bool Write, int Unwritten) Note(string source)
    {
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            if (now - _windowStart >= _window)
            {
                // A new window: sources quiet since the last one are forgotten, their unwritten count going to the next line written.
                _windowStart = now;
                _linesInWindow = 0;
                Forget(now);
            }
            if (_sources.TryGetValue(source, out var seen) && now - seen.WrittenAt < _window)
            {
                _sources[source] = seen with { Unwritten = seen.Unwritten + 1 };
                return (false, 0);
            }
            if (_linesInWindow >= maxLinesPerWindow)
            {
                _unwrittenElsewhere++;
                return (false, 0);
            }
            _linesInWindow++;
            var unwritten = seen.Unwritten + _unwrittenElsewhere;
            _unwrittenElsewhere = 0;
            _sources[source] = (now, 0);
            return (true, unwritten);
        }
    }

    private void Forget(DateTimeOffset now)
    {
        foreach (var (key, seen) in _sources.Where(p => now - p.Value.WrittenAt >= _window).ToList())
        {
            _unwrittenElsewhere += seen.Unwritten;
            _sources.Remove(key);
        }
    }
}
