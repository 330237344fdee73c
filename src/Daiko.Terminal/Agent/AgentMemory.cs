using System.Runtime.InteropServices;

namespace Daiko.Terminal.Agent;

/// <summary>
/// Keeps the agent's memory (the unlocked device key, the session tickets) to itself, as ssh-agent does. On Linux any
/// other process of the same user may otherwise attach to it with ptrace or read /proc/PID/mem, and a crash writes a core
/// file with the secrets in it. A non-dumpable process (prctl PR_SET_DUMPABLE 0) writes no core file, and the kernel's
/// ptrace access check, which guards ptrace and /proc/PID/mem, environ and cwd, refuses it to every process but root's.
/// </summary>
public static class AgentMemory
{
    private const int PrSetDumpable = 4;

    /// <summary>
    /// Makes this process non-dumpable; null when it is (or where there is no such thing: not Linux), else why it could
    /// not be made so (prctl refused, as a seccomp filter may make it).
    /// </summary>
    public static string? MakeNonDumpable()
    {
        if (!OperatingSystem.IsLinux()) return null;
        if (Prctl(PrSetDumpable, 0, 0, 0, 0) == 0) return null;
        return $"prctl(PR_SET_DUMPABLE, 0) failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}";
    }

    // prctl(2) is variadic; every option passes its arguments as unsigned longs, which is how this declares them.
    [DllImport("libc", EntryPoint = "prctl", SetLastError = true)]
    private static extern int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);
}
