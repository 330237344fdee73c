using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Daiko.Terminal.Agent;

/// <summary>
/// Who is at the other end of a connected Unix socket, as the kernel recorded it (SO_PEERCRED, Linux): for the agent, the
/// client that connected; for a client, the process that listens (the one that called listen(2)).
/// </summary>
internal static class PeerCredentials
{
    /// <summary>The peer's process id and effective user id.</summary>
    public static (int Pid, uint Uid) Of(Socket socket)
    {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        var credentials = new byte[12];
        socket.GetRawSocketOption(1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, credentials);
        return (BitConverter.ToInt32(credentials, 0), BitConverter.ToUInt32(credentials, 4));
    }

    /// <summary>This process's effective user id.</summary>
    public static uint CurrentUser() => GetEuid();

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEuid();
}
