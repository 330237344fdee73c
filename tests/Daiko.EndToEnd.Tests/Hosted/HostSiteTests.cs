using Daiko.Host;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests.Hosted;

/// <summary>
/// What a hosted site directory refuses before any node serves from it: a connection string whose sessions the owners'
/// schemas cannot rely on, an owner name with more in it than the name.
/// </summary>
public sealed class HostSiteTests : IDisposable
{
    private const string Password = "pw-that-must-stay-private";

    private readonly TempDirectory _dir = new("daiko-host-site");

    private string Site => Path.Combine(_dir.Path, "site");

    /// <summary>A connection string to a port nothing listens on: none of these tests gets as far as the database.</summary>
    private static string ConnectionString(string extra = "") => $"Host=127.0.0.1;Port={Loopback.FreePort()};Username=daiko;Password={Password};{extra}";

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task AConnectionStringWithMultiplexing_IsRefusedByHostInitAndAtANodesStart_SayingWhyAndWhatToDo()
    {
        var file = Path.Combine(_dir.Path, "postgres.conn");
        await File.WriteAllTextAsync(file, ConnectionString("Multiplexing=true"));

        var init = await DaikoCli.RunAsync(["host", "init", "--site", Site, "--postgres-file", file]);

        Assert.True(init.ExitCode == 1, init.ToString());
        Assert.Contains("sets Multiplexing=true, which a hosted site cannot use", init.StandardError, StringComparison.Ordinal);
        Assert.Contains("Remove Multiplexing", init.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(Site, "postgres")));

        // A site made without it, whose connection file was edited afterwards: the node does not start.
        HostSite.Create(Site, ConnectionString(), null);
        await File.WriteAllTextAsync(Path.Combine(Site, "postgres"), ConnectionString("Multiplexing=true") + "\n");
        var serve = await DaikoCli.RunAsync(["host", "serve", "--site", Site, "--listen", $"127.0.0.1:{Loopback.FreePort()}"], timeout: TimeSpan.FromSeconds(30));

        Assert.True(serve.ExitCode == 1, serve.ToString());
        Assert.Contains($"the connection string in {Path.Combine(Site, "postgres")} sets Multiplexing=true", serve.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("listening", serve.StandardOutput, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => HostSite.Open(Site).OpenDataSource());
    }

    [Theory]
    [InlineData("alice\n")]
    [InlineData("alice\r\n")]
    [InlineData("\nalice")]
    [InlineData("ali ce")]
    public void AnOwnerNameWithMoreThanItsLettersDigitsAndDashes_ATrailingNewlineToo_IsRefused(string name)
    {
        Assert.False(HostSite.IsOwnerName(name));
        Assert.Throws<ArgumentException>(() => HostSite.RequireOwnerName(name));
        Assert.True(HostSite.IsOwnerName("alice"));
    }
}
