using System.Net;
using System.Net.Sockets;

namespace Daiko.TestSupport;

/// <summary>A real TLS server started by a test on loopback; disposing it stops it.</summary>
public interface ITlsPeer : IDisposable
{
    string Name { get; }

    string Host { get; }

    int Port { get; }

    /// <summary>Whether the peer accepts psk_ke (resumption without a fresh ECDHE).</summary>
    bool AllowsPskKe { get; }

    /// <summary>The HTTP path whose response names the client certificate's subject.</summary>
    string IdentityPath { get; }

    /// <summary>Process output for diagnostics when a test fails.</summary>
    string Log { get; }
}

public sealed record TlsPeerOptions
{
    public bool RequireClientCertificate { get; init; } = true;

    public bool AllowPskKe { get; init; }

    public bool EarlyData { get; init; }

    /// <summary>
    /// nginx only: no stateless tickets (<c>ssl_session_tickets off</c>) but a shared server-side session
    /// cache, so OpenSSL issues short stateful TLS 1.3 tickets (a session id) that do not carry the
    /// client certificate.
    /// </summary>
    public bool StatefulTickets { get; init; }

    public int Tickets { get; init; } = 2;

    /// <summary>The protocol versions the server speaks: "1.3" (the default), "1.2", or "both".</summary>
    public string Versions { get; init; } = "1.3";

    /// <summary>openssl only: further s_server arguments (e.g. a cipher list, -no_ems, -msg).</summary>
    public IReadOnlyList<string> ExtraArguments { get; init; } = [];

    /// <summary>openssl only: environment for s_server (e.g. OPENSSL_CONF naming a configuration that disables a feature).</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }

    /// <summary>openssl only: false runs s_server in its plain mode, which prints what it receives (early data included).</summary>
    public bool Www { get; init; } = true;

    /// <summary>nginx only: connections its one worker holds at once (load benchmarks run hundreds of clients).</summary>
    public int WorkerConnections { get; init; } = 64;

    /// <summary>
    /// nginx only: also a plain-HTTP listener on loopback answering <c>stub_status</c> (the connections
    /// accepted so far), so that a benchmark can count a peer's handshakes over a wall-clock window of
    /// its own choosing (<see cref="NginxServer.AcceptedAsync"/>).
    /// </summary>
    public bool Status { get; init; }

    /// <summary>
    /// nginx only: how long a session (and so a ticket's lifetime hint) lasts, in seconds (nginx's default
    /// is 300). A load run that hands one device thousands of tickets uses a short one, so that the
    /// device's policy (every ticket counts until it expires) is not what it measures.
    /// </summary>
    public int SessionTimeoutSeconds { get; init; } = 300;
}

/// <summary><c>openssl s_server -www</c>: replies to GET with a status page naming the client certificate.</summary>
public sealed class OpenSslServer : ITlsPeer
{
    private readonly ExternalProcess _process;

    private OpenSslServer(ExternalProcess process, int port, bool allowsPskKe)
    {
        _process = process;
        Port = port;
        AllowsPskKe = allowsPskKe;
    }

    public string Name => "openssl";

    public string Host => "localhost";

    public int Port { get; }

    public bool AllowsPskKe { get; }

    public string IdentityPath => "/";

    public string Log => _process.Output;

    public Task WaitForOutputAsync(string text, TimeSpan timeout) => _process.WaitForOutputAsync(text, timeout);

    /// <summary>Types a command into s_server's console (plain mode only): "R" renegotiates, asking for a certificate.</summary>
    public async Task SendCommandAsync(string command)
    {
        await _process.StandardInput.WriteLineAsync(command);
        await _process.StandardInput.FlushAsync();
    }

    public static async Task<OpenSslServer> StartAsync(TestPki pki, TlsPeerOptions? options = null)
    {
        options ??= new TlsPeerOptions();
        var port = Loopback.FreePort();
        var args = new List<string>
        {
            "s_server", "-accept", $"127.0.0.1:{port}",
            "-cert", pki.Server.CertificatePath, "-key", pki.Server.KeyPath,
            "-CAfile", pki.RootPath, "-num_tickets", options.Tickets.ToString(),
        };
        if (options.Versions == "1.3") args.Add("-tls1_3");
        else if (options.Versions == "1.2") args.Add("-tls1_2");
        args.AddRange(options.ExtraArguments);
        if (options.Www) args.Add("-www");
        if (options.RequireClientCertificate) args.AddRange(["-Verify", "2"]);
        if (options.AllowPskKe) args.Add("-allow_no_dhe_kex");
        if (options.EarlyData) args.Add("-early_data");
        var process = new ExternalProcess("openssl", args, environment: options.Environment?.ToDictionary());
        var server = new OpenSslServer(process, port, options.AllowPskKe);
        try
        {
            await process.WaitForOutputAsync("ACCEPT", TimeSpan.FromSeconds(10));
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

/// <summary>
/// <c>gnutls-serv --http</c>. gnutls-serv cannot bind to one address, so it runs in a private network
/// namespace (only its own loopback) and is reached through a Unix socket bridged to 127.0.0.1.
/// </summary>
public sealed class GnuTlsServer : ITlsPeer
{
    private readonly ExternalProcess _process;
    private readonly UnixBridge _bridge;

    private GnuTlsServer(ExternalProcess process, UnixBridge bridge)
    {
        _process = process;
        _bridge = bridge;
    }

    public string Name => "gnutls";

    public string Host => "localhost";

    public int Port => _bridge.Port;

    public bool AllowsPskKe => false;

    public string IdentityPath => "/";

    public string Log => _process.Output;

    public static async Task<GnuTlsServer> StartAsync(TestPki pki, string workDirectory, TlsPeerOptions? options = null)
    {
        options ??= new TlsPeerOptions();
        var socket = Path.Combine(workDirectory, $"gnutls-{Guid.NewGuid():N}.sock");
        const int innerPort = 5556;
        var serverArgs = $"gnutls-serv --http -p {innerPort} --x509certfile '{pki.Server.CertificatePath}' --x509keyfile '{pki.Server.KeyPath}' --x509cafile '{pki.RootPath}'"
            + (options.RequireClientCertificate ? " --require-client-cert" : "")
            + (options.EarlyData ? " --earlydata --maxearlydata=16384" : "")
            + (options.Tickets == 0 ? " --noticket" : "")
            + options.Versions switch
            {
                "1.2" => " --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.2'",
                "both" => " --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2'",
                _ => " --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3'",
            };
        var script = $"ip link set lo up && socat UNIX-LISTEN:'{socket}',fork,mode=600 TCP:127.0.0.1:{innerPort} & exec {serverArgs}";
        // A PID namespace of its own too: when gnutls-serv (its first process) ends, the kernel ends
        // the socat bridge with it, so no bridge outlives the test.
        var process = new ExternalProcess("unshare", ["--net", "--pid", "--fork", "--kill-child", "sh", "-c", script]);
        try
        {
            // gnutls-serv writes "listening on IPv4 … port N..." before it binds and "done" after it
            // listens (to unbuffered stderr): wait for the "done".
            await process.WaitForOutputAsync($"port {innerPort}...done", TimeSpan.FromSeconds(10));
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (!File.Exists(socket))
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException("the gnutls-serv socket bridge did not appear");
                await Task.Delay(25);
            }
        }
        catch
        {
            process.Dispose();
            throw;
        }
        return new GnuTlsServer(process, UnixBridge.Start(socket));
    }

    public void Dispose()
    {
        _bridge.Dispose();
        _process.Dispose();
    }
}

/// <summary>nginx with <c>ssl_verify_client on</c> and session tickets, answering with the client's DN.</summary>
public sealed class NginxServer : ITlsPeer
{
    private readonly ExternalProcess _process;

    private NginxServer(ExternalProcess process, int port, int? statusPort)
    {
        _process = process;
        Port = port;
        StatusPort = statusPort;
    }

    /// <summary>The plain-HTTP <c>stub_status</c> listener's port (<see cref="TlsPeerOptions.Status"/>), or null.</summary>
    public int? StatusPort { get; }

    /// <summary>nginx's one process (no master, one worker): where all of its CPU time is counted.</summary>
    public int ProcessId => _process.Id;

    /// <summary>Connections nginx accepted so far, its own included (<c>stub_status</c>'s "accepts").</summary>
    public async Task<long> AcceptedAsync(CancellationToken cancellationToken = default)
    {
        if (StatusPort is not { } port) throw new InvalidOperationException("this nginx was started without its status listener (TlsPeerOptions.Status)");
        using var http = new System.Net.Http.HttpClient();
        var text = await http.GetStringAsync($"http://127.0.0.1:{port}/status", cancellationToken);
        // "Active connections: 1 \nserver accepts handled requests\n 12 12 12 \nReading: ...": the third line's first number.
        var counts = text.Split('\n')[2].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return long.Parse(counts[0], System.Globalization.CultureInfo.InvariantCulture);
    }

    public string Name => "nginx";

    public string Host => "localhost";

    public int Port { get; }

    public bool AllowsPskKe => false;

    public string IdentityPath => "/whoami";

    private string? _prefix;

    /// <summary>Files here are served under /static/ (bulk transfers in benchmarks).</summary>
    public string StaticDirectory => Path.Combine(_prefix!, "www");

    public string Log => _process.Output + (_prefix is null ? "" : ReadLog(Path.Combine(_prefix, "logs", "error.log")));

    private static string ReadLog(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return new StreamReader(stream).ReadToEnd();
        }
        catch (IOException)
        {
            return "";
        }
    }

    public static async Task<NginxServer> StartAsync(TestPki pki, string workDirectory, TlsPeerOptions? options = null)
    {
        options ??= new TlsPeerOptions();
        var prefix = Path.Combine(workDirectory, $"nginx-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path.Combine(prefix, "logs"));
        var port = Loopback.FreePort();
        int? statusPort = options.Status ? Loopback.FreePort() : null;
        var status = statusPort is { } sp ? $$"""
                server {
                    listen 127.0.0.1:{{sp}};
                    access_log off;
                    location = /status { stub_status; }
                }
            """ : "";
        var ticketKey = Path.Combine(prefix, "ticket.key");
        File.WriteAllBytes(ticketKey, System.Security.Cryptography.RandomNumberGenerator.GetBytes(80));
        var user = Environment.UserName == "root" ? "user root;" : "";
        var protocols = options.Versions switch { "1.2" => "TLSv1.2", "both" => "TLSv1.2 TLSv1.3", _ => "TLSv1.3" };
        var conf = $$"""
            {{user}}
            worker_processes 1;
            daemon off;
            master_process off;
            error_log {{prefix}}/logs/error.log info;
            pid {{prefix}}/nginx.pid;
            events { worker_connections {{options.WorkerConnections}}; }
            http {
                access_log {{prefix}}/logs/access.log;
                client_body_temp_path {{prefix}}/body;
                proxy_temp_path {{prefix}}/proxy;
                fastcgi_temp_path {{prefix}}/fastcgi;
                uwsgi_temp_path {{prefix}}/uwsgi;
                scgi_temp_path {{prefix}}/scgi;
                server {
                    listen 127.0.0.1:{{port}} ssl;
                    server_name localhost;
                    ssl_protocols {{protocols}};
                    ssl_certificate {{pki.Server.CertificatePath}};
                    ssl_certificate_key {{pki.Server.KeyPath}};
                    ssl_client_certificate {{pki.RootPath}};
                    ssl_verify_client {{(options.RequireClientCertificate ? "on" : "optional")}};
                    {{(options.StatefulTickets ? "ssl_session_tickets off;" : "ssl_session_tickets on;")}}
                    {{(options.StatefulTickets ? "ssl_session_cache shared:daiko:1m;" : $"ssl_session_ticket_key {ticketKey};")}}
                    ssl_early_data {{(options.EarlyData ? "on" : "off")}};
                    ssl_session_timeout {{options.SessionTimeoutSeconds}}s;
                    {{(options.AllowPskKe ? "ssl_conf_command Options AllowNoDHEKEX;" : "")}}
                    location = /whoami {
                        default_type text/plain;
                        return 200 "subject=$ssl_client_s_dn reused=$ssl_session_reused early=$ssl_early_data\n";
                    }
                    location /static/ {
                        alias {{prefix}}/www/;
                    }
                    location = /upload {
                        client_max_body_size 0;
                        return 200 "ok\n";
                    }
                    location / {
                        default_type text/plain;
                        return 200 "hello from nginx\n";
                    }
                }
            {{status}}
            }
            """;
        Directory.CreateDirectory(Path.Combine(prefix, "www"));
        var confPath = Path.Combine(prefix, "nginx.conf");
        File.WriteAllText(confPath, conf);
        var process = new ExternalProcess("/usr/sbin/nginx", ["-p", prefix, "-c", confPath]);
        try
        {
            await Loopback.WaitForListenerAsync(port, TimeSpan.FromSeconds(10), () => !process.HasExited);
        }
        catch (Exception e)
        {
            var log = File.Exists(Path.Combine(prefix, "logs/error.log")) ? File.ReadAllText(Path.Combine(prefix, "logs/error.log")) : "";
            process.Dispose();
            throw new InvalidOperationException($"nginx did not start: {process.Output}\n{log}", e);
        }
        return new NginxServer(process, port, statusPort) { _prefix = prefix };
    }

    public void Dispose() => _process.Dispose();
}

/// <summary>Accepts TCP on 127.0.0.1 and forwards each connection to a Unix socket.</summary>
public sealed class UnixBridge : IDisposable
{
    private readonly TcpListener _listener;
    private readonly string _socketPath;
    private readonly CancellationTokenSource _stop = new();

    private UnixBridge(TcpListener listener, string socketPath)
    {
        _listener = listener;
        _socketPath = socketPath;
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public static UnixBridge Start(string socketPath)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var bridge = new UnixBridge(listener, socketPath);
        _ = bridge.AcceptLoopAsync();
        return bridge;
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception) { return; }
            _ = PumpAsync(client);
        }
    }

    private async Task PumpAsync(TcpClient client)
    {
        using (client)
        using (var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            try
            {
                await unix.ConnectAsync(new UnixDomainSocketEndPoint(_socketPath), _stop.Token);
                using var unixStream = new NetworkStream(unix, ownsSocket: false);
                var tcp = client.GetStream();
                var up = CopyThenShutdownAsync(tcp, unixStream, () => unix.Shutdown(SocketShutdown.Send));
                var down = CopyThenShutdownAsync(unixStream, tcp, () => client.Client.Shutdown(SocketShutdown.Send));
                await Task.WhenAll(up, down);
            }
            catch (Exception) { }
        }
    }

    private async Task CopyThenShutdownAsync(Stream from, Stream to, Action shutdown)
    {
        try { await from.CopyToAsync(to, _stop.Token); }
        finally { try { shutdown(); } catch (Exception) { } }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
    }
}
