using Daiko.Cli;

namespace Daiko.EndToEnd.Tests;

/// <summary>Tightening a home directory never fails on what another process is creating or removing at the same moment.</summary>
public sealed class PrivateFilesTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("daiko-private-").FullName;

    [Fact]
    public void AnEntryRemovedAfterItWasListed_IsSkipped_NotAnError()
    {
        if (OperatingSystem.IsWindows()) return;
        var path = Path.Combine(_directory, "home.db-journal");
        File.WriteAllText(path, "x");
        File.SetUnixFileMode(path, (UnixFileMode)0b110_100_100);
        var listed = new FileInfo(path);
        File.Delete(path);

        var changes = new List<string>();
        PrivateFiles.TightenOne(listed, _directory, changes);

        Assert.Empty(changes);
    }

    [Fact]
    public void ALooseFile_IsTightenedTo0600_AndTheChangeIsSaid()
    {
        if (OperatingSystem.IsWindows()) return;
        var path = Path.Combine(_directory, "home.db");
        File.WriteAllText(path, "x");
        File.SetUnixFileMode(path, (UnixFileMode)0b110_100_100);

        var changes = PrivateFiles.Tighten(_directory);

        Assert.Equal((UnixFileMode)0b110_000_000, File.GetUnixFileMode(path));
        Assert.Contains("home.db 0644→0600", changes);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
