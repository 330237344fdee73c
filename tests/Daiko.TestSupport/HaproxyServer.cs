namespace Daiko.TestSupport;

/// <summary>
/// A real HAProxy (Debian's haproxy) in TCP mode on a free loopback port, as a load balancer in front
/// of home servers or hosted nodes: one backend with a PROXY protocol v2 header (<c>send-proxy-v2</c>),
/// or several in round robin with health checks every 250 ms and a connection to a dead backend
/// dispatched to another. Runs in the foreground as the test's child; stopped (killed) on dispose.
/// </summary>
public sealed class HaproxyServer : IDisposable
{
    private readonly TempDirectory _dir;
    private readonly ExternalProcess _process;

    private HaproxyServer(TempDirectory dir, ExternalProcess process, int port)
    {
        _dir = dir;
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public string Output => _process.Output;

    public int ProcessId => _process.Id;

    public static bool Available => File.Exists("/usr/sbin/haproxy");

    public static Task<HaproxyServer> StartAsync(int backendPort, string options = "send-proxy-v2") =>
        StartAsync([backendPort], options, balanced: false);

    /// <summary>Several backends in round robin (<paramref name="options"/> on each server line).</summary>
    public static Task<HaproxyServer> StartAsync(IEnumerable<int> backendPorts, string options = "") =>
        StartAsync(backendPorts, options, balanced: true);

    private static async Task<HaproxyServer> StartAsync(IEnumerable<int> backendPorts, string options, bool balanced)
    {
        var dir = new TempDirectory("daiko-haproxy");
        var port = Loopback.FreePort();
        var config = Path.Combine(dir.Path, "haproxy.cfg");
        var check = balanced ? " check inter 250ms fall 1 rise 1" : "";
        var servers = string.Join('\n', backendPorts.Select((b, i) => $"  server home{i + 1} 127.0.0.1:{b} {options}{check}"));
        var timeouts = balanced ? "  timeout client 1h\n  timeout server 1h\n  retries 3\n  option redispatch" : "  timeout client 60s\n  timeout server 60s";
        await File.WriteAllTextAsync(config, $"global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n{timeouts}\n" +
            $"frontend control\n  bind 127.0.0.1:{port}\n  default_backend home\nbackend home\n  balance roundrobin\n{servers}\n");
        var process = new ExternalProcess("haproxy", ["-db", "-f", config]);
        try
        {
            await Loopback.WaitForListenerAsync(port, TimeSpan.FromSeconds(30), () => !process.HasExited);
        }
        catch
        {
            var output = process.Output;
            process.Dispose();
            dir.Dispose();
            throw new InvalidOperationException($"haproxy did not start (scripts/install-deps.sh installs it): {output}");
        }
        return new HaproxyServer(dir, process, port);
    }

    public void Dispose()
    {
        _process.Dispose();
        _dir.Dispose();
    }
}
