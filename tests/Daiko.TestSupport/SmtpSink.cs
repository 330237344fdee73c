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

    /// <param name="refusing">a recipient address containing this is refused at RCPT (550), as a server refuses an unknown mailbox.</param>
    public static async Task<SmtpSink> StartAsync(string directory, int? port = null, string? refusing = null)
    {
        var p = port ?? Loopback.FreePort();
        var maildir = Path.Combine(directory, "maildir");
        foreach (var sub in new[] { "tmp", "new", "cur" }) Directory.CreateDirectory(Path.Combine(maildir, sub));
        var handler = "aiosmtpd.handlers.Mailbox";
        IDictionary<string, string>? environment = null;
        if (refusing is not null)
        {
            // aiosmtpd's Mailbox, refusing some recipients: a module of its own beside the maildir.
            File.WriteAllText(Path.Combine(directory, "refusing_mailbox.py"), $$"""
                from aiosmtpd.handlers import Mailbox
                class RefusingMailbox(Mailbox):
                    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                        if {{System.Text.Json.JsonSerializer.Serialize(refusing)}} in address:
                            return '550 5.1.1 no such mailbox here'
                        envelope.rcpt_tos.append(address)
                        return '250 OK'
                """);
            handler = "refusing_mailbox.RefusingMailbox";
            environment = new Dictionary<string, string> { ["PYTHONPATH"] = directory };
        }
        var process = new ExternalProcess("/usr/bin/python3", ["-m", "aiosmtpd", "-n", "-l", $"127.0.0.1:{p}", "-c", handler, maildir], environment: environment);
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
