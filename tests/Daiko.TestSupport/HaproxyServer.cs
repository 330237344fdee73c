namespace Daiko.TestSupport;

/// <summary>
/// A real HAProxy (Debian's haproxy) in TCP mode on a free loopback port, forwarding to
/// 127.0.0.1:<c>backendPort</c> with a PROXY protocol v2 header (<c>send-proxy-v2</c>), as a load
/// balancer in front of a home server does. Stopped (killed) on dispose.
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

    public static async Task<HaproxyServer> StartAsync(int backendPort, string options = "send-proxy-v2")
    {
        var dir = new TempDirectory("daiko-haproxy");
        var port = Loopback.FreePort();
        var config = Path.Combine(dir.Path, "haproxy.cfg");
        await File.WriteAllTextAsync(config, $"""
            global
              maxconn 4096
            defaults
              mode tcp
              timeout connect 5s
              timeout client 60s
              timeout server 60s
            frontend control
              bind 127.0.0.1:{port}
              default_backend home
            backend home
              server home 127.0.0.1:{backendPort} {options}

            """);
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
