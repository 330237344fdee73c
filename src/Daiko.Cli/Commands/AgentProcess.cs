using System.Diagnostics;
using Daiko.Terminal.Agent;

namespace Daiko.Cli.Commands;

/// <summary>The terminal agent as a background process: started by 'terminal unlock', stopped by 'terminal lock' or a failed unlock.</summary>
internal static class AgentProcess
{
    /// <summary>Starts 'daiko terminal agent' in the background, handing it the access-card PIN on stdin.</summary>
    public static async Task<string?> StartAsync(string dir, string accessPin, CancellationToken ct)
    {
        var self = Environment.ProcessPath!;
        var info = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(typeof(Program).Assembly.Location);
        // The directory as a whole path: a lock that cannot ask the socket who listens (the agent is stopped or hung) knows
        // the agent by it (IsAgentOf).
        foreach (var a in new[] { "terminal", "agent", "--terminal", Path.GetFullPath(dir) }) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        // The agent's warnings (it could not keep its memory from its user's other processes) reach the user on this
        // unlock's stderr as they come; the rest of what it says is kept for the error when it does not start.
        var said = new System.Text.StringBuilder();
        var reading = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync(CancellationToken.None) is { } line)
            {
                if (line.StartsWith("daiko: warning: ", StringComparison.Ordinal)) Console.Error.WriteLine(line);
                else lock (said) said.AppendLine(line);
            }
        }, CancellationToken.None);
        await process.StandardInput.WriteLineAsync(accessPin);
        process.StandardInput.Close();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!AgentClient.IsRunning(dir))
        {
            if (process.HasExited)
            {
                await reading.WaitAsync(ct);
                string error;
                lock (said) error = said.ToString().Trim();
                return error.StartsWith("daiko: ", StringComparison.Ordinal) ? error[7..] : $"the terminal agent did not start: {error}";
            }
            if (DateTime.UtcNow > deadline)
            {
                // Not left to come up later with the access card open, unknown to the user who was told it failed.
                try { process.Kill(); } catch (InvalidOperationException) { }
                return "the terminal agent did not start within 30 s";
            }
            await Task.Delay(50, ct);
        }
        return null;
    }

    /// <summary>
    /// With the agent already running, the access-card PIN is still checked (and counted toward its three
    /// tries) on every unlock; null when it is right. The third wrong PIN destroys the key, and the agent
    /// holding it stops.
    /// </summary>
    public static string? CheckAccessPin(string dir, string accessPin)
    {
        Daiko.Cards.AccessCardUnlock result;
        try
        {
            using var access = Daiko.Cards.AccessCard.Open(dir);
            result = access.Unlock(accessPin);
        }
        catch (FileNotFoundException e)
        {
            result = new Daiko.Cards.AccessCardUnlock(Daiko.Cards.AccessCardOutcome.Destroyed, 0, Daiko.Cards.AccessCardState.Destroyed, e.Message);
        }
        if (result.Accepted) return null;
        if (result.Outcome == Daiko.Cards.AccessCardOutcome.Destroyed) Stop(dir);
        return result.Message;
    }

    /// <summary>
    /// Stops this terminal's agent, and removes its socket and pid files. The pid file may be stale (the agent was killed,
    /// the machine restarted): the process it names is stopped only if it is this terminal's agent, never another process
    /// that now has that id.
    /// </summary>
    /// <param name="agent">
    /// the agent's process id as a connection to its socket just named it (<see cref="AgentClient.ConnectAsync"/>): a lock
    /// that agent answered ends it, and it may have closed its socket before this looks there, so the socket cannot name it
    /// again; it is still waited for (and stopped, if it lingers).
    /// </param>
    /// <returns>
    /// false when a process still listens on the socket, taking no connection, and was not known for this terminal's agent
    /// (one started by an older version, with the directory as a relative path, or whose directory moved): its files are
    /// kept then, so that a later lock can still find it.
    /// </returns>
    public static bool Stop(string dir, int? agent = null)
    {
        var pidFile = TerminalAgent.PidPath(dir);
        var known = agent is { } named && !HasEnded(named) && HasAgentCommandLine(named) ? named : (int?)null;
        if ((known ?? (ReadPid(pidFile) is { } read && IsAgentOf(read, dir) ? read : null)) is { } pid)
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill();
                WaitUntilEnded(process, TimeSpan.FromSeconds(5));
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // The agent had already ended (a lock ends it too), or is not ours to stop: nothing to stop.
            }
        }
        // A listener still there that takes no connection (given a moment to close, if it was the agent's) is not known.
        for (var i = 0; AgentClient.Listening(dir) is (null, true); i++)
        {
            if (i == 30) return false;
            Thread.Sleep(100);
        }
        foreach (var f in new[] { pidFile, TerminalAgent.SocketPath(dir) })
        {
            try { File.Delete(f); } catch (IOException) { }
        }
        return true;
    }

    /// <summary>
    /// Waits until the agent has ended: gone, or a zombie. A zombie has exited and holds nothing; only its reaping is
    /// left, which is its parent's, and the agent's parent is whatever reaps orphans (it left the unlock that started
    /// it). <see cref="Process.WaitForExit(int)"/> counts a zombie as running, so where that reaper is slow (a
    /// container's init that reaps once a second) every lock waited a second or more for it.
    /// </summary>
    private static void WaitUntilEnded(Process agent, TimeSpan timeout)
    {
        if (!OperatingSystem.IsLinux())
        {
            agent.WaitForExit(timeout);
            return;
        }
        var clock = Stopwatch.StartNew();
        while (!HasEnded(agent.Id) && clock.Elapsed < timeout) Thread.Sleep(10);
    }

    /// <summary>Whether process <paramref name="pid"/> has ended (Linux): no such process, or one that has exited and waits to be reaped.</summary>
    internal static bool HasEnded(int pid)
    {
        try
        {
            // "pid (comm) state ...": the name may hold spaces and parentheses, so the state is the field after the last ')'.
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var close = stat.LastIndexOf(')');
            return close < 0 || close + 2 >= stat.Length || stat[close + 2] is 'Z' or 'X';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }

    /// <summary>
    /// Whether process <paramref name="pid"/> is this <paramref name="dir"/>'s agent: its command line (in /proc, which
    /// anyone may read) is 'daiko terminal agent --terminal ...', and it is the process listening on the directory's agent
    /// socket, however the directory was spelled (a symlink, a relative path). Not its /proc/PID/cwd, as once: the agent
    /// is non-dumpable (<see cref="AgentMemory"/>), so its own user may no longer read that, and 'terminal lock' would not
    /// find its agent. Where there is no /proc, as before: the pid file is trusted.
    /// </summary>
    /// <remarks>
    /// A stopped or hung agent takes no connection once its backlog is full, so the socket cannot name it: then a process
    /// with an agent's command line whose directory is this one, as a whole path, is taken for it (an agent started by
    /// 'terminal unlock' is given its directory so). Else a lock would remove the socket and leave that agent running.
    /// </remarks>
    internal static bool IsAgentOf(int pid, string dir)
    {
        if (!OperatingSystem.IsLinux()) return true;
        if (AgentDirectoryOf(pid) is not { } named) return false;
        var (listening, full) = AgentClient.Listening(dir);
        if (listening is { } listener) return listener == pid;
        return full && Path.IsPathFullyQualified(named) && RealPath(named) is { } real && real == RealPath(dir);
    }

    /// <summary>Whether process <paramref name="pid"/>'s command line (in /proc, which anyone may read) is 'daiko terminal agent --terminal ...' (Linux; elsewhere true).</summary>
    private static bool HasAgentCommandLine(int pid) => !OperatingSystem.IsLinux() || AgentDirectoryOf(pid) is not null;

    /// <summary>The directory after --terminal in process <paramref name="pid"/>'s command line when it is 'daiko terminal agent --terminal DIR', else null.</summary>
    private static string? AgentDirectoryOf(int pid)
    {
        try
        {
            var args = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0');
            var at = Array.IndexOf(args, "--terminal");
            return at >= 2 && at + 1 < args.Length && args[at - 1] == "agent" && args[at - 2] == "terminal" ? args[at + 1] : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The path with every symbolic link resolved (realpath(3)), or null when it does not exist.</summary>
    private static string? RealPath(string path)
    {
        var resolved = NativeRealPath(path, IntPtr.Zero);
        if (resolved == IntPtr.Zero) return null;
        try
        {
            return System.Runtime.InteropServices.Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            // realpath(3) allocated it with malloc; FreeHGlobal is free(3) on Unix.
            System.Runtime.InteropServices.Marshal.FreeHGlobal(resolved);
        }
    }

#pragma warning disable SYSLIB1054 // LibraryImport needs unsafe code, which this assembly does not allow
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "realpath", SetLastError = true)]
    private static extern IntPtr NativeRealPath([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);
#pragma warning restore SYSLIB1054

    /// <summary>The agent's process id; null when there is none — including an agent that ended (and removed its file) as we looked.</summary>
    private static int? ReadPid(string pidFile)
    {
        try
        {
            return int.TryParse(File.ReadAllText(pidFile), out var pid) ? pid : null;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }
}
