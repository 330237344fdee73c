using System.Globalization;

namespace Daiko.Bench.Load;

/// <summary>Another process's resident memory and CPU seconds, read from /proc (Linux).</summary>
public sealed class ProcessSampler(int pid)
{
    private static readonly double TicksPerSecond = 100; // USER_HZ on Linux

    public int Pid => pid;

    /// <summary>Resident set size in MiB (VmRSS).</summary>
    public double RssMb() => StatusKb("VmRSS:") / 1024;

    /// <summary>
    /// The resident set in MiB split as /proc/PID/status splits it: anonymous memory (GC heap, native heaps,
    /// thread stacks, jitted code) and file-backed pages (mapped assemblies and libraries, counted whole
    /// even where other processes share them).
    /// </summary>
    public (double Anonymous, double File) RssSplitMb() => (StatusKb("RssAnon:") / 1024, StatusKb("RssFile:") / 1024);

    /// <summary>The process's threads now (Threads in /proc/PID/status): each one's stack and pool caches count in the RSS.</summary>
    public int Threads()
    {
        var n = StatusKb("Threads:");
        return double.IsNaN(n) ? -1 : (int)n;
    }

    private double StatusKb(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (!line.StartsWith(field, StringComparison.Ordinal)) continue;
            return double.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        return double.NaN;
    }

    /// <summary>User plus system CPU seconds used so far.</summary>
    public double CpuSeconds()
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        // Fields after the command name (which is in parentheses and may hold spaces): state is field 3, utime 14, stime 15.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture)) / TicksPerSecond;
    }

    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";
}
