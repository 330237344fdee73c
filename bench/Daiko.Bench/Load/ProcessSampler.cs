using System.Globalization;

namespace Daiko.Bench.Load;

/// <summary>Another process's resident memory and CPU seconds, read from /proc (Linux).</summary>
public sealed class ProcessSampler(int pid)
{
    private static readonly double TicksPerSecond = 100; // USER_HZ on Linux

    /// <summary>This process (the load generator).</summary>
    public static ProcessSampler Self { get; } = new(Environment.ProcessId);

    /// <summary>The market (nginx, one process) the load runs against, once the rig started it: its CPU is counted beside the home server's.</summary>
    public static ProcessSampler? Market { get; set; }

    /// <summary>The market's CPU seconds so far, or NaN with no market.</summary>
    public static double MarketCpu() => Market?.CpuSeconds() ?? double.NaN;

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

    /// <summary>
    /// Read the time the kernel's scheduler counts for each of the process's threads (/proc/PID/task/*/schedstat,
    /// nanoseconds) rather than /proc/PID/stat's 10 ms ticks: exact for a process whose threads live as long
    /// as it does (nginx's one), where a row of short rounds (ten sessions, 30 ms) would read ±10 ms a round.
    /// </summary>
    public bool Precise { get; init; }

    /// <summary>User plus system CPU seconds used so far.</summary>
    public double CpuSeconds() =>
        // This process's own time from getrusage (microseconds): /proc counts in 10 ms ticks, too coarse for
        // a short row (32 sessions of a warm-cache handout took less than one tick of the generator's CPU).
        pid == Environment.ProcessId ? Environment.CpuUsage.TotalTime.TotalSeconds : Precise ? ScheduledSeconds(pid) : Times(pid, children: false);

    private static double ScheduledSeconds(int process)
    {
        long nanoseconds = 0;
        foreach (var task in Directory.EnumerateDirectories($"/proc/{process}/task"))
        {
            try
            {
                nanoseconds += long.Parse(File.ReadAllText(Path.Combine(task, "schedstat")).Split(' ')[0], CultureInfo.InvariantCulture);
            }
            catch (IOException)
            {
                // the thread ended between the listing and the read
            }
        }
        return nanoseconds / 1e9;
    }

    /// <summary>
    /// User plus system CPU seconds of the process, of its children it has waited for, and of its live
    /// children (a PostgreSQL postmaster and its backends: a backend that ends is counted in the postmaster's).
    /// </summary>
    public double CpuSecondsWithChildren()
    {
        var total = Times(pid, children: true);
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var child)) continue;
            try
            {
                if (ParentOf(child) == pid) total += Times(child, children: true);
            }
            catch (IOException)
            {
                // the child ended between the listing and the read: its time is now in the parent's children's times
            }
        }
        return total;
    }

    private static string[] StatFields(int process)
    {
        var stat = File.ReadAllText($"/proc/{process}/stat");
        // Fields after the command name (which is in parentheses and may hold spaces): state is field 3, ppid 4, utime 14, stime 15, cutime 16, cstime 17.
        return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
    }

    private static int ParentOf(int process) => int.Parse(StatFields(process)[1], CultureInfo.InvariantCulture);

    private static double Times(int process, bool children)
    {
        var fields = StatFields(process);
        var ticks = double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture);
        if (children) ticks += double.Parse(fields[13], CultureInfo.InvariantCulture) + double.Parse(fields[14], CultureInfo.InvariantCulture);
        return ticks / TicksPerSecond;
    }

    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";

    /// <summary>The machine's CPU time so far, all cores, and the part the hypervisor gave to others (steal), in clock ticks.</summary>
    public static (long Steal, long Total) MachineCpu()
    {
        if (!File.Exists("/proc/stat")) return (0, 0);
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(f => long.Parse(f, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        // user nice system idle iowait irq softirq steal (guest time is already inside user).
        return (fields.Count > 7 ? fields[7] : 0, fields.Take(8).Sum());
    }

    /// <summary>The share of the machine's CPU time taken by the hypervisor for others between two readings of <see cref="MachineCpu"/>, in percent.</summary>
    public static double StealPercent((long Steal, long Total) before, (long Steal, long Total) after) =>
        after.Total > before.Total ? 100.0 * (after.Steal - before.Steal) / (after.Total - before.Total) : double.NaN;
}
