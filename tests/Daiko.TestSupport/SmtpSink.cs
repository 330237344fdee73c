namespace Daiko.TestSupport;

/// <summary>A real SMTP server (aiosmtpd from Debian) on 127.0.0.1 writing what it receives to a Maildir.</summary>
public sealed class SmtpSink : IDisposable
{
    private readonly ExternalProcess _process;

    private SmtpSink(ExternalProcess process, int port, string maildir)
    {
        _process = process;
        Port = port;
        Maildir = maildir;
    }

    public int Port { get; }

    public string Maildir { get; }

    public static async Task<SmtpSink> StartAsync(string directory, int? port = null)
    {
        var p = port ?? Loopback.FreePort();
        var maildir = Path.Combine(directory, "maildir");
        foreach (var sub in new[] { "tmp", "new", "cur" }) Directory.CreateDirectory(Path.Combine(maildir, sub));
        var process = new ExternalProcess("/usr/bin/python3", ["-m", "aiosmtpd", "-n", "-l", $"127.0.0.1:{p}", "-c", "aiosmtpd.handlers.Mailbox", maildir]);
        try
        {
            await Loopback.WaitForListenerAsync(p, TimeSpan.FromSeconds(15), () => !process.HasExited);
        }
        catch
        {
            var output = process.Output;
            process.Dispose();
            throw new InvalidOperationException($"aiosmtpd did not start: {output}");
        }
        return new SmtpSink(process, p, maildir);
    }

    /// <summary>The raw messages delivered so far.</summary>
    public IReadOnlyList<string> Messages() =>
        Directory.Exists(Path.Combine(Maildir, "new"))
            ? Directory.GetFiles(Path.Combine(Maildir, "new")).Order().Select(File.ReadAllText).ToList()
            : [];

    public void Dispose() => _process.Dispose();
}
