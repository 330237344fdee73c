using System.Net.Sockets;
using System.Runtime.InteropServices;
using Daiko.Cards;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Terminal.Agent;

/// <summary>
/// Keeps the access card unlocked between CLI invocations, as ssh-agent keeps keys: it listens on a
/// Unix socket in the terminal directory (mode 0600, and the peer's uid is checked) and carries every
/// local client's requests over its one control channel to the home server (<see cref="HomeChannel"/>),
/// answering resume requests from its local ticket stock (<see cref="TicketStock"/>) when it can. The
/// device key stays in this process's memory; the agent ends at lock, after the idle period, or when
/// the home server refuses the device (revoked), and its channel and stock with it.
/// </summary>
public sealed class TerminalAgent : IAsyncDisposable
{
    private readonly string _directory;
    private readonly AccessCard _access;
    private readonly Socket _listener;
    private readonly TimeProvider _time;
    private readonly TimeSpan _idle;
    private readonly CancellationTokenSource _stop = new();
    private DateTimeOffset _lastUse;
    private int _active;
    private readonly TaskSet _serving = new();
    private readonly HomeChannel _channel;
    private readonly TicketStock _stock;

    private TerminalAgent(string directory, AccessCard access, Socket listener, TimeProvider time, TimeSpan idle)
    {
        _channel = new HomeChannel(directory, access.DeviceKey, time, OnNotice, () => _stock!.Drop());
        _stock = new TicketStock(_channel, time);
        _directory = directory;
        _access = access;
        _listener = listener;
        _time = time;
        _idle = idle;
        _lastUse = time.GetUtcNow();
    }

    public static string SocketPath(string directory) => Path.Combine(directory, "agent.sock");

    public static string PidPath(string directory) => Path.Combine(directory, "agent.pid");

    public static TerminalAgent Start(string directory, AccessCard unlocked, TimeProvider? time = null, TimeSpan? idle = null)
    {
        var path = SocketPath(directory);
        if (File.Exists(path)) File.Delete(path);
        // Bound and listening under a temporary name, then renamed: the socket file (which the CLI takes
        // as "the agent is running") never exists before it accepts connections.
        var pending = path + ".pending";
        if (File.Exists(pending)) File.Delete(pending);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var oldMask = OperatingSystem.IsWindows() ? 0 : UMask(0x3f);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(pending));
        }
        finally
        {
            if (!OperatingSystem.IsWindows()) UMask(oldMask);
        }
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(pending, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        listener.Listen(16);
        File.Move(pending, path);
        File.WriteAllText(PidPath(directory), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return new TerminalAgent(directory, unlocked, listener, time ?? TimeProvider.System, idle ?? TimeSpan.FromMinutes(10));
    }

    /// <summary>Serves until idle for the idle period, or until stopped.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
        var watchdog = WatchIdleAsync(linked.Token);
        try
        {
            while (!linked.IsCancellationRequested)
            {
                Socket client;
                try { client = await _listener.AcceptAsync(linked.Token); }
                catch (OperationCanceledException) { break; }
                if (!SameUser(client))
                {
                    client.Dispose();
                    continue;
                }
                _lastUse = _time.GetUtcNow();
                _serving.Track(ServeAsync(client, linked.Token));
            }
        }
        finally
        {
            await _stop.CancelAsync();
            try { await watchdog; } catch (OperationCanceledException) { }
            await _serving.WhenAll();
            _stock.Drop();
            await _stock.WhenIdleAsync();
            await _channel.DisposeAsync();
            Cleanup();
        }
    }

    private async Task WatchIdleAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), _time, cancellationToken);
            if (Volatile.Read(ref _active) == 0 && _time.GetUtcNow() - _lastUse >= _idle)
            {
                await _stop.CancelAsync();
                return;
            }
        }
    }

    private async Task ServeAsync(Socket client, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _active);
        try
        {
            var session = new LocalSession(_channel, _stock);
            await using var local = new ControlConnection(new NetworkStream(client, ownsSocket: true), session.HandleAsync);
            if (_channel.Refused is { } refused)
            {
                // The home server refused this device (revoked): the client learns why, and the agent ends.
                await ControlConnection.RefuseAsync(new NetworkStream(client, ownsSocket: false), refused.Code, refused.Message, cancellationToken);
                Stop();
                return;
            }
            local.Start();
            await Task.WhenAny(local.Completion, Task.Delay(Timeout.Infinite, cancellationToken));
            await local.DisposeAsync();
            await session.Splices;
            session.Ended();
            if (_channel.Refused is not null || session.Locked) Stop();
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SocketException or Daiko.Tls.TlsException)
        {
            // The local client or the home server went away: this client ends, the agent serves on.
        }
        finally
        {
            _lastUse = _time.GetUtcNow();
            Interlocked.Decrement(ref _active);
        }
    }

    /// <summary>A notice from the home server on the channel: drop-tickets empties the local stock at once.</summary>
    private void OnNotice(ControlMessage notice)
    {
        if (notice is DropTicketsNotice) _stock.Drop();
    }

    public void Stop() => _stop.Cancel();

    private void Cleanup()
    {
        _access.Lock();
        _listener.Dispose();
        try { File.Delete(SocketPath(_directory)); } catch (IOException) { }
        try { File.Delete(PidPath(_directory)); } catch (IOException) { }
    }

    /// <summary>Only the agent's own user may talk to it (SO_PEERCRED).</summary>
    private static bool SameUser(Socket client)
    {
        if (!OperatingSystem.IsLinux()) return true;
        return PeerCredentials.Of(client).Uid == PeerCredentials.CurrentUser();
    }

    [DllImport("libc", EntryPoint = "umask")]
    private static extern int UMask(int mask);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        Cleanup();
    }
}

/// <summary>The CLI's way to the home server: through the running agent.</summary>
public static class AgentClient
{
    public static bool IsRunning(string directory) => File.Exists(TerminalAgent.SocketPath(directory));

    /// <summary>
    /// The id of the process listening on this terminal's agent socket, or null when nothing listens there (Linux: the
    /// SO_PEERCRED of a connection to it names the process that called listen(2), the agent that bound it). It names the
    /// directory's agent without reading the agent's /proc files, which a non-dumpable agent keeps from its own user. The
    /// connection is closed without a request, which the agent takes as a client that ended (another user's it drops unserved).
    /// </summary>
    public static int? ListeningProcessId(string directory) => Listening(directory).Pid;

    /// <summary>
    /// The process listening on this terminal's agent socket (<see cref="ListeningProcessId"/>), and whether a listener is
    /// there that takes no connection now (<c>Full</c>): its backlog is full, as a stopped or hung agent's fills up.
    /// </summary>
    public static (int? Pid, bool Full) Listening(string directory)
    {
        if (!OperatingSystem.IsLinux()) return (null, false);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            // A Unix socket's connect does not wait: a full backlog refuses it at once (EAGAIN). Bounded all the same, as a
            // hung agent must not hang 'terminal lock'.
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            socket.ConnectAsync(new UnixDomainSocketEndPoint(TerminalAgent.SocketPath(directory)), timeout.Token).AsTask().GetAwaiter().GetResult();
            return (PeerCredentials.Of(socket).Pid, false);
        }
        catch (SocketException e)
        {
            return (null, IsFull(e));
        }
        catch (OperationCanceledException)
        {
            return (null, false);
        }
    }

    /// <summary>A connect refused because the listener's backlog is full: someone listens, but takes no connection now.</summary>
    private static bool IsFull(SocketException e) => e.SocketErrorCode is SocketError.WouldBlock or SocketError.TryAgain;

    /// <summary>How long 'terminal lock' waits for the agent to answer at all (a request it answers itself) before it stops it anyway.</summary>
    public static readonly TimeSpan AnswerProbeTimeout = TimeSpan.FromSeconds(5);

    public static async Task<ControlConnection> ConnectAsync(string directory, CancellationToken cancellationToken) =>
        (await ConnectToAgentAsync(directory, cancellationToken)).Control;

    /// <summary>A connection to the agent, and the agent's process id as the kernel names the process listening on its socket (Linux; else null).</summary>
    public static async Task<(ControlConnection Control, int? AgentPid)> ConnectToAgentAsync(string directory, CancellationToken cancellationToken)
    {
        var path = TerminalAgent.SocketPath(directory);
        if (!File.Exists(path)) throw new ControlErrorException(ErrorCode.Locked, "the access card is locked: run 'daiko terminal unlock' first");
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            if (IsFull(e))
            {
                throw new ControlErrorException(ErrorCode.Unavailable, "the terminal agent takes no connection (it is stopped or hung, and others wait): 'daiko terminal lock' stops it");
            }
            throw new ControlErrorException(ErrorCode.Locked, "the terminal agent is gone (idle timeout or lock): run 'daiko terminal unlock' again");
        }
        int? agent = OperatingSystem.IsLinux() ? PeerCredentials.Of(socket).Pid : null;
        var connection = new ControlConnection(new NetworkStream(socket, ownsSocket: true)) { Peer = "the terminal agent" };
        connection.Start();
        return (connection, agent);
    }
}
