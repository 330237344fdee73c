using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Daiko.Demo;

/// <summary>The demo's local SMTP sink: Debian's aiosmtpd on 127.0.0.1 writing to a Maildir.</summary>
internal sealed class SmtpSinkProcess : IDisposable
{
    private readonly Process _process;
    private readonly string _maildir;

    private SmtpSinkProcess(Process process, int port, string maildir)
    {
        _process = process;
        Port = port;
        _maildir = maildir;
    }

    public int Port { get; }

    public static SmtpSinkProcess Start(string directory)
    {
        var maildir = Path.Combine(directory, "maildir");
        foreach (var sub in new[] { "tmp", "new", "cur" }) Directory.CreateDirectory(Path.Combine(maildir, sub));
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var info = new ProcessStartInfo(python) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "-m", "aiosmtpd", "-n", "-l", $"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Mailbox", maildir }) info.ArgumentList.Add(a);
        var process = Process.Start(info) ?? throw new InvalidOperationException("cannot start python3 for the SMTP sink");
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            if (process.HasExited) throw new InvalidOperationException("the SMTP sink (python3-aiosmtpd) did not start; install it with 'apt-get install python3-aiosmtpd'");
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, port);
                break;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(50);
            }
        }
        return new SmtpSinkProcess(process, port, maildir);
    }

    public async Task<string> WaitForMailAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var files = Directory.GetFiles(Path.Combine(_maildir, "new"));
            if (files.Length > 0) return await File.ReadAllTextAsync(files[0]);
            await Task.Delay(50);
        }
        throw new TimeoutException("no mail arrived at the SMTP sink");
    }

    public void Dispose()
    {
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
