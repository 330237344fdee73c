namespace Daiko.TestSupport;

/// <summary>
/// HAProxy (Debian's haproxy) in TCP mode on 127.0.0.1 and a free port, in front of the given backends:
/// round robin, a health check every 250 ms, a connection to a dead backend dispatched to another.
/// Runs in the foreground as the test's child; dispose stops it.
/// </summary>
public sealed class HaproxyServer : IDisposable
{
    private readonly ExternalProcess _process;

    private HaproxyServer(ExternalProcess process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public string Log => _process.Output;

    public static bool Available => File.Exists("/usr/sbin/haproxy");

    public static async Task<HaproxyServer> StartAsync(string directory, IEnumerable<int> backends)
    {
        var port = Loopback.FreePort();
        Directory.CreateDirectory(directory);
        var config = Path.Combine(directory, $"haproxy-{port}.cfg");
        var servers = string.Join('\n', backends.Select((b, i) => $"    server node{i + 1} 127.0.0.1:{b} check inter 250ms fall 1 rise 1"));
        await File.WriteAllTextAsync(config, $"""
            global
                maxconn 2000
            defaults
                mode tcp
                timeout connect 1s
                timeout client 1h
                timeout server 1h
                retries 3
                option redispatch
            frontend terminals
                bind 127.0.0.1:{port}
                default_backend nodes
            backend nodes
                balance roundrobin
            {servers}

            """);
        var process = new ExternalProcess("/usr/sbin/haproxy", ["-db", "-f", config]);
        var server = new HaproxyServer(process, port);
        try
        {
            await Loopback.WaitForListenerAsync(port, TimeSpan.FromSeconds(10), () => !process.HasExited);
        }
        catch
        {
            server.Dispose();
            throw;
        }
        return server;
    }

    public void Dispose() => _process.Dispose();
}
