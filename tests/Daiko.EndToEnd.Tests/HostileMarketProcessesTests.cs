using System.Diagnostics;
using System.Text.RegularExpressions;
using Daiko.TestSupport;
using Daiko.TestSupport.Hostile;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// <c>daiko terminal get</c> and <c>terminal prefetch</c> through a real home server to a hostile market:
/// a cut reaches the terminal as a cut, a stall as a timeout, a ticket flood stays capped at home.
/// </summary>
public sealed class HostileMarketProcessesTests(HomeAndTerminal system) : IClassFixture<HomeAndTerminal>
{
    private HostileTlsServer Market(Func<HostileConnection, Task> script) => new(system.Pki.Server.Certificate, script);

    [Theory]
    [InlineData("handoff")]
    [InlineData("relay")]
    public async Task EndDelimitedBody_CutWithoutCloseNotify_ExitsOne(string mode)
    {
        await using var market = Market(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\n\r\nthe first half of a bod");
            c.CloseWithoutCloseNotify();
        });

        var result = await DaikoCli.RunAsync(["terminal", "get", market.Url(), "--terminal", system.Terminal, "--mode", mode]);

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("close_notify", result.StandardError);
    }

    [Fact]
    public async Task StalledMarket_WithTimeout3_ExitsOneInTime()
    {
        // The stall is timed from the moment the market has the request (the process's start-up and the delegation are
        // not the timeout's), and lasts far longer than the bound: only the client's timeout can end it in time.
        var stalled = new Stopwatch();
        await using var market = Market(async c =>
        {
            await c.ReadRequestAsync();
            stalled.Start();
            await Task.Delay(TimeSpan.FromSeconds(60));
        });
        var clock = Stopwatch.StartNew();

        var result = await DaikoCli.RunAsync(["terminal", "get", market.Url(), "--terminal", system.Terminal, "--mode", "handoff", "--timeout", "3"]);

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("timed out", result.StandardError);
        // 3 s of stall, then the alert and the process's exit on a loaded machine.
        Assert.True(stalled.IsRunning, "the market never had the request");
        Assert.True(stalled.Elapsed < TimeSpan.FromSeconds(10), $"the client left {stalled.Elapsed.TotalSeconds:0.0} s after the market stalled");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(40), $"took {clock.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task TricklingMarket_WithinEachReadsTimeout_IsStoppedByMaxTime()
    {
        // A byte a second: every read is answered well within --timeout, so only the whole fetch's deadline ends it.
        var trickling = new Stopwatch();
        await using var market = Market(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            trickling.Start();
            for (var i = 0; i < 60; i++)
            {
                await c.SendAsync("x");
                await Task.Delay(TimeSpan.FromSeconds(1));
            }
        });
        var clock = Stopwatch.StartNew();

        var result = await DaikoCli.RunAsync(["terminal", "get", market.Url(), "--terminal", system.Terminal, "--mode", "handoff", "--timeout", "5", "--max-time", "4"]);

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("took longer than --max-time 4 s", result.StandardError, StringComparison.Ordinal);
        // The 4 s run from the fetch's start, before the trickle; the trickle would last 60 s.
        // (On a loaded machine --max-time may end the fetch before the trickle starts: then the trickle's clock never ran.)
        Assert.True(trickling.Elapsed < TimeSpan.FromSeconds(15), $"the client left {trickling.Elapsed.TotalSeconds:0.0} s into the trickle");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(40), $"took {clock.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task TicketFlood_TheHomeServerCachesAtMostItsCap()
    {
        await using var market = Market(async c =>
        {
            for (var i = 0; i < 2000; i++) await c.SendTicketAsync(1024);
            await Task.Delay(TimeSpan.FromSeconds(5));
        });

        var result = await DaikoCli.RunAsync(["terminal", "prefetch", market.Url(), "--terminal", system.Terminal, "--count", "8"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        var ready = int.Parse(Regex.Match(result.StandardOutput, @"(\d+) session ticket").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        // One handshake brings at most the per-fetch cap; the cache cap (16) is the second line.
        Assert.InRange(ready, 1, 8);
    }
}
