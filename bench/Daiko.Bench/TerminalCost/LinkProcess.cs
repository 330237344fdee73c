using System.Globalization;
using System.Text.RegularExpressions;
using Daiko.TestSupport;

namespace Daiko.Bench.TerminalCost;

/// <summary>
/// An emulated slow link (<see cref="SlowLink"/>) in a process of its own, so that relaying its bytes
/// is not charged to the terminal's CPU time. <c>slow-link --target PORT --rtt-ms N --kbps N</c> prints
/// its port, then answers "reset N" and "count N" on stdin with "&lt;reset N&gt;" and
/// "&lt;count N UP DOWN&gt;".
/// </summary>
internal sealed partial class LinkProcess : IDisposable
{
    private readonly ExternalProcess _process;
    private int _sequence;

    private LinkProcess(ExternalProcess process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public static async Task<int> ServeAsync(string[] args)
    {
        int Arg(string name) => int.Parse(args[Array.IndexOf(args, name) + 1], CultureInfo.InvariantCulture);
        using var link = SlowLink.Start(Arg("--target"), TimeSpan.FromMilliseconds(Arg("--rtt-ms")), Arg("--kbps") * 1000.0);
        Console.WriteLine($"slow link on port {link.Port}.");
        string? line;
        while ((line = await Console.In.ReadLineAsync()) is not null)
        {
            var parts = line.Split(' ');
            if (parts[0] == "reset")
            {
                link.ResetCounters();
                Console.WriteLine($"<reset {parts[1]}>");
            }
            else if (parts[0] == "count")
            {
                Console.WriteLine($"<count {parts[1]} {link.UpstreamBytes} {link.DownstreamBytes}>");
            }
        }
        return 0;
    }

    public static async Task<LinkProcess> StartAsync(int targetPort, TimeSpan roundTrip, int kbps)
    {
        var process = new ExternalProcess("dotnet", [typeof(LinkProcess).Assembly.Location, "slow-link", "--target", targetPort.ToString(CultureInfo.InvariantCulture),
            "--rtt-ms", ((int)roundTrip.TotalMilliseconds).ToString(CultureInfo.InvariantCulture), "--kbps", kbps.ToString(CultureInfo.InvariantCulture)]);
        await process.WaitForOutputAsync("slow link on port ", TimeSpan.FromSeconds(30));
        var port = int.Parse(PortLine().Match(process.Output).Groups[1].Value, CultureInfo.InvariantCulture);
        return new LinkProcess(process, port);
    }

    public async Task ResetCountersAsync()
    {
        var n = ++_sequence;
        await _process.StandardInput.WriteLineAsync($"reset {n}");
        await _process.StandardInput.FlushAsync();
        await _process.WaitForOutputAsync($"<reset {n}>", TimeSpan.FromSeconds(10));
    }

    /// <summary>Bytes the client sent and received through the link since the last reset.</summary>
    public async Task<(long Upstream, long Downstream)> CountersAsync()
    {
        var n = ++_sequence;
        await _process.StandardInput.WriteLineAsync($"count {n}");
        await _process.StandardInput.FlushAsync();
        await _process.WaitForOutputAsync($"<count {n} ", TimeSpan.FromSeconds(10));
        var m = Regex.Match(_process.Output, $"<count {n} (\\d+) (\\d+)>");
        return (long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    [GeneratedRegex(@"slow link on port (\d+)\.")]
    private static partial Regex PortLine();

    public void Dispose()
    {
        try
        {
            _process.StandardInput.Close();
        }
        catch (IOException)
        {
            // the link process is already gone
        }
        _process.Dispose();
    }
}
