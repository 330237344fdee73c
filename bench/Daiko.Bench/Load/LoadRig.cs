using Daiko.Bench.TerminalCost;
using Daiko.TestSupport;

namespace Daiko.Bench.Load;

/// <summary>
/// What a load run stands on: a PKI, nginx requiring client certificates (room for hundreds of
/// connections), a home directory with its card on SoftHSM2 served by a real <c>daiko home serve</c>
/// process, and enrolled terminals, each unlocked with its own session.
/// </summary>
public sealed class LoadRig : IAsyncDisposable
{
    public const string Pin1 = "1111";
    public const string Pin2 = "2222";

    private readonly TempDirectory _dir;
    private readonly ExternalProcess _server;

    private LoadRig(TempDirectory dir, TestPki pki, NginxServer nginx, ExternalProcess server, string home, List<LoadTerminal> terminals)
    {
        _dir = dir;
        Pki = pki;
        Nginx = nginx;
        _server = server;
        HomeDirectory = home;
        Home = new ProcessSampler(server.Id);
        ProcessSampler.Market = new ProcessSampler(nginx.ProcessId) { Precise = true };
        Terminals = terminals;
    }

    public TestPki Pki { get; }

    public NginxServer Nginx { get; }

    public string HomeDirectory { get; }

    /// <summary>The <c>daiko home serve</c> process.</summary>
    public ProcessSampler Home { get; }

    public IReadOnlyList<LoadTerminal> Terminals { get; }

    public string ServerOutput => _server.Output;

    /// <param name="beforeServe">run on the home directory before the server starts (e.g. declaring payees).</param>
    /// <param name="serverEnvironment">variables added to the home server's environment (e.g. a GC setting to compare).</param>
    /// <param name="marketPskKe">nginx allows psk_ke (OpenSSL's AllowNoDHEKEX), and the terminals resume as the home server's tickets say (<c>--kex auto</c>).</param>
    public static async Task<LoadRig> StartAsync(int terminals, string name, Func<string, Task>? beforeServe = null, IDictionary<string, string>? serverEnvironment = null,
        bool marketPskKe = false)
    {
        var dir = new TempDirectory(name);
        var pki = TestPki.Create(Path.Combine(dir.Path, "pki"));
        var nginx = await NginxServer.StartAsync(pki, dir.Path, new TlsPeerOptions { WorkerConnections = 4096, SessionTimeoutSeconds = 60, Status = true, AllowPskKe = marketPskKe });
        var home = Path.Combine(dir.Path, "home");
        await TerminalCostBenchmark.SetUpHomeAsync(pki, home, dir.Path);
        if (beforeServe is not null) await beforeServe(home);
        var port = Loopback.FreePort();
        var server = DaikoCli.Start(["home", "serve", "--home", home, "--listen", $"127.0.0.1:{port}"], serverEnvironment);
        await server.WaitForOutputAsync("home server listening", TimeSpan.FromSeconds(60));
        // Enrolled a few at a time: each enrollment is a handshake and a store write at the home server.
        var enrolled = new LoadTerminal[terminals];
        using var gate = new SemaphoreSlim(8);
        await Task.WhenAll(Enumerable.Range(0, terminals).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                enrolled[i] = await LoadTerminal.EnrollAsync(home, $"127.0.0.1:{port}", Path.Combine(dir.Path, "terminals"), $"t{i}", nginx.Port, CancellationToken.None,
                    marketPskKe ? null : Daiko.Tls.PskKeyExchangeMode.PskDheKe);
                await enrolled[i].UnlockAsync(CancellationToken.None);
            }
            finally
            {
                gate.Release();
            }
        }));
        Console.WriteLine($"load: {terminals} terminals enrolled and unlocked against a home server on 127.0.0.1:{port}; nginx on {nginx.Port}");
        return new LoadRig(dir, pki, nginx, server, home, [.. enrolled]);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var t in Terminals) await t.DisposeAsync();
        _server.Dispose();
        Nginx.Dispose();
        _dir.Dispose();
    }
}
