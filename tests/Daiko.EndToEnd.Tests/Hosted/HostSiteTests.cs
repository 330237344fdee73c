using Daiko.Host;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests.Hosted;

/// <summary>
/// What a hosted site directory refuses before any node serves from it: a connection string whose sessions the owners'
/// schemas cannot rely on, secret files open to others, an owner name with more in it than the name.
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

    [Fact]
    public async Task ANodeStart_RefusesASecretFileOpenToItsGroupOrOthers_NamingTheFileAndTheChmodToRun()
    {
        if (OperatingSystem.IsWindows()) return;
        HostSite.Create(Site, ConnectionString(), null);
        foreach (var name in new[] { "postgres", "hsm-pin" })
        {
            var path = Path.Combine(Site, name);
            // As a careless copy to another node leaves it.
            File.SetUnixFileMode(path, (UnixFileMode)0b110_100_000);

            var serve = await DaikoCli.RunAsync(["host", "serve", "--site", Site, "--listen", $"127.0.0.1:{Loopback.FreePort()}"], timeout: TimeSpan.FromSeconds(30));

            Assert.True(serve.ExitCode == 1, serve.ToString());
            Assert.Contains($"{path} holds", serve.StandardError, StringComparison.Ordinal);
            Assert.Contains("(mode 0640)", serve.StandardError, StringComparison.Ordinal);
            Assert.Contains($"run 'chmod 600 {path}'", serve.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("listening", serve.StandardOutput, StringComparison.Ordinal);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    [Fact]
    public void TheSitesSecretFiles_Are0600FromTheCallThatMakesThem_SoAHandleOpenedBeforeNeverReadsTheSecret()
    {
        if (OperatingSystem.IsWindows()) return;
        // A file made first at the umask's mode (0644 here) can be opened by anyone until it is narrowed; one there before
        // `host init` stands for that moment, held open by another reader.
        Directory.CreateDirectory(Site);
        var path = Path.Combine(Site, "postgres");
        File.WriteAllText(path, "");
        File.SetUnixFileMode(path, (UnixFileMode)0b110_100_100);
        using var opened = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);

        HostSite.Create(Site, ConnectionString(), null);

        using (var reader = new StreamReader(opened)) Assert.DoesNotContain(Password, reader.ReadToEnd(), StringComparison.Ordinal);
        Assert.Contains(Password, File.ReadAllText(path), StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(Site, "hsm-pin")));
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
