using System.Globalization;

namespace Daiko.Bench.Load;

/// <summary>Another process's resident memory and CPU seconds, read from /proc (Linux).</summary>
public sealed class ProcessSampler(int pid)
{
    private static readonly double TicksPerSecond = 100; // USER_HZ on Linux

    /// <summary>This process (the load generator).</summary>
    public static ProcessSampler Self { get; } = new(Environment.ProcessId);

    /// <summary>Resident set size in MiB (VmRSS).</summary>
    public double RssMb()
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (!line.StartsWith("VmRSS:", StringComparison.Ordinal)) continue;
            var kb = double.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            return kb / 1024;
        }
        return double.NaN;
    }

    /// <summary>The process's threads now (Threads in /proc/PID/status): each one's stack and pool caches count in the RSS.</summary>
    public int Threads()
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("Threads:", StringComparison.Ordinal)) return int.Parse(line["Threads:".Length..].Trim(), CultureInfo.InvariantCulture);
        }
        return -1;
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
