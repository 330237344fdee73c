using System.Diagnostics;

namespace Daiko.TestSupport;

/// <summary>The result of one <c>daiko</c> invocation.</summary>
public sealed record CliResult(int ExitCode, string StandardOutput, string StandardError)
{
    public override string ToString() => $"exit {ExitCode}\nstdout:\n{StandardOutput}\nstderr:\n{StandardError}";
}

/// <summary>
/// Runs the real <c>daiko</c> command as a separate process (the test project references Daiko.Cli,
/// so daiko.dll sits beside the test assembly).
/// </summary>
public static class DaikoCli
{
    public static string DllPath => Path.Combine(AppContext.BaseDirectory, "daiko.dll");

    public static Task<CliResult> RunAsync(IEnumerable<string> arguments, string? standardInput = null, TimeSpan? timeout = null, IDictionary<string, string>? environment = null)
        => RunProgramAsync("dotnet", [DllPath, .. arguments], standardInput, timeout, environment);

    /// <summary>Runs <c>daiko</c> as another user (see <see cref="AsUser"/>), from <paramref name="dll"/> (a copy that user may read), else this build's.</summary>
    public static Task<CliResult> RunAsUserAsync(int uid, IEnumerable<string> arguments, string? standardInput = null, IDictionary<string, string>? environment = null, string? dll = null)
        => RunProgramAsync("setpriv", AsUser(uid, ["dotnet", dll ?? DllPath, .. arguments]), standardInput, environment: environment);

    /// <summary>
    /// setpriv's arguments to run <paramref name="commandLine"/> as user and group <paramref name="uid"/> with no
    /// supplementary groups: a test running as root meets what an ordinary user meets.
    /// </summary>
    public static string[] AsUser(int uid, IEnumerable<string> commandLine) => [$"--reuid={uid}", $"--regid={uid}", "--clear-groups", .. commandLine];

    /// <summary>Runs <paramref name="program"/> to its end (at most <paramref name="timeout"/>, a minute unless told).</summary>
    public static async Task<CliResult> RunProgramAsync(string program, IEnumerable<string> arguments, string? standardInput = null, TimeSpan? timeout = null, IDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        if (environment is not null)
        {
            foreach (var (k, v) in environment) info.Environment[k] = v;
        }
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (standardInput is not null) await process.StandardInput.WriteAsync(standardInput);
        process.StandardInput.Close();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish within {(timeout ?? TimeSpan.FromSeconds(60)).TotalSeconds} s; stderr so far:\n{(stderr.IsCompleted ? stderr.Result : "")}");
        }
        return new CliResult(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Starts a long-running <c>daiko</c> command (a server); dispose to stop it.</summary>
    public static ExternalProcess Start(IEnumerable<string> arguments, IDictionary<string, string>? environment = null)
        => new("dotnet", new[] { DllPath }.Concat(arguments), environment: environment);
}
