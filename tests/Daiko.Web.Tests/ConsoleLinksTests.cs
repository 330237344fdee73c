using Daiko.Home.Web;
using Daiko.TestSupport;

namespace Daiko.Web.Tests;

/// <summary>One-time login links on a real links file (no server: the file is what the command and the server share).</summary>
public sealed class ConsoleLinksTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-links");

    public void Dispose() => _dir.Dispose();

    private string LinksFile => Path.Combine(_dir.Path, "console-links");

    private string IssueToken()
    {
        var (url, _) = ConsoleLinks.Issue(_dir.Path, TimeSpan.FromMinutes(5));
        return url[(url.LastIndexOf('/') + 1)..];
    }

    [Fact]
    public void MadeUpTokens_AreRefusedWithoutTouchingTheLinksFile_EvenWhileTheCommandHoldsIt_AndARealOneWorksOnce()
    {
        ConsoleLinks.RecordRunning(_dir.Path, "http://127.0.0.1:8080");
        var token = IssueToken();
        var before = (File.ReadAllText(LinksFile), File.GetLastWriteTimeUtc(LinksFile));
        // While 'home console-link' holds the file (adding a link), before the server ever read it: refused at once, not
        // waited for; and a real link is not spent by it.
        using (new FileStream(LinksFile, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            Assert.False(ConsoleLinks.Spend(_dir.Path, "made-up-first"));
            Assert.False(ConsoleLinks.Spend(_dir.Path, token));
        }

        // /login/ needs no session: a stranger's guesses neither rewrite the file ...
        for (var i = 0; i < 100; i++) Assert.False(ConsoleLinks.Spend(_dir.Path, $"made-up-{i}"));
        Assert.Equal(before, (File.ReadAllText(LinksFile), File.GetLastWriteTimeUtc(LinksFile)));
        // ... nor wait for (or fail on) its lock while 'home console-link' holds it to add a link.
        using (new FileStream(LinksFile, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            for (var i = 0; i < 100; i++) Assert.False(ConsoleLinks.Spend(_dir.Path, $"made-up-again-{i}"));
        }

        Assert.True(ConsoleLinks.Spend(_dir.Path, token));
        Assert.False(ConsoleLinks.Spend(_dir.Path, token));
        // A link issued after the file was last read is found (the file changed, so it is read again).
        var next = IssueToken();
        Assert.True(ConsoleLinks.Spend(_dir.Path, next));
    }
}
