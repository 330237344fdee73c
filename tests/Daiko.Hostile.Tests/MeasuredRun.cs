using System.Diagnostics;
using Daiko.TestSupport;

namespace Daiko.Hostile.Tests;

/// <summary>One real <c>daiko</c> process: exit code, output, wall time and peak resident memory.</summary>
public sealed record MeasuredResult(int ExitCode, string StandardOutput, string StandardError, TimeSpan Elapsed, long PeakResidentBytes)
{
    public double PeakResidentMiB => PeakResidentBytes / 1048576.0;

    public override string ToString() =>
        $"exit {ExitCode} after {Elapsed.TotalSeconds:0.00} s, peak RSS {PeakResidentMiB:0} MiB\nstdout ({StandardOutput.Length} chars):\n{(StandardOutput.Length > 400 ? StandardOutput[..400] + "…" : StandardOutput)}\nstderr:\n{StandardError}";
}

public static class MeasuredRun
{
    /// <summary>Runs <c>daiko</c> with <paramref name="arguments"/>, sampling VmHWM from /proc while it runs.</summary>
    public static async Task<MeasuredResult> DaikoAsync(IEnumerable<string> arguments, TimeSpan? limit = null)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        info.ArgumentList.Add(DaikoCli.DllPath);
        foreach (var a in arguments) info.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        long peak = 0;
        var deadline = limit ?? TimeSpan.FromSeconds(60);
        while (!process.HasExited)
        {
            peak = Math.Max(peak, HighWaterMark(process.Id));
            if (clock.Elapsed > deadline)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"daiko {string.Join(' ', arguments)} still ran after {deadline.TotalSeconds} s");
            }
            await Task.Delay(20);
        }
        await process.WaitForExitAsync();
        clock.Stop();
        return new MeasuredResult(process.ExitCode, await stdout, await stderr, clock.Elapsed, peak);
    }

    private static long HighWaterMark(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    return long.Parse(line[6..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
            // The process ended between the check and the read.
        }
        return 0;
    }
}
