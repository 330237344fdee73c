using Daiko.TestSupport;

namespace Daiko.Hostile.Tests.Peers;

/// <summary>A real <c>daiko home serve</c> process on a free loopback port, with a fresh home made by <c>daiko home init</c>.</summary>
public class HomeServeProcess : IAsyncLifetime
{
    public const string Pin1 = "1111";
    public const string Pin2 = "2222";

    public TempDirectory Dir { get; } = new("daiko-hostile-home");

    public string Home => Path.Combine(Dir.Path, "home");

    public int Port { get; private set; }

    public ExternalProcess Server { get; private set; } = null!;

    /// <summary>Options <c>home serve</c> starts with.</summary>
    protected virtual string[] ServeOptions => [];

    public virtual async Task InitializeAsync()
    {
        await Ok(["home", "init", "--home", Home, "--subject", TestPki.UserSubject], $"{Pin1}\n{Pin2}\nadmin-code-123\n");
        await StartAsync(ServeOptions);
    }

    public async Task StartAsync(params string[] extra)
    {
        Port = Loopback.FreePort();
        Server = DaikoCli.Start(["home", "serve", "--home", Home, "--listen", $"127.0.0.1:{Port}", .. extra]);
        await Server.WaitForOutputAsync("home server listening", TimeSpan.FromSeconds(60));
    }

    public async Task<string> NewCodeAsync(string name) =>
        (await Ok(["home", "device", "add", "--home", Home, "--name", name])).StandardOutput.Trim();

    public static async Task<CliResult> Ok(string[] args, string? stdin = null)
    {
        var result = await DaikoCli.RunAsync(args, stdin, TimeSpan.FromSeconds(120));
        Assert.True(result.ExitCode == 0, $"daiko {string.Join(' ', args)} failed: {result}");
        return result;
    }

    public virtual Task DisposeAsync()
    {
        Server.Dispose();
        Dir.Dispose();
        return Task.CompletedTask;
    }
}
