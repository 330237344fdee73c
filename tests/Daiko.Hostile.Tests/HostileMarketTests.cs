using Daiko.TestSupport.Hostile;
using Daiko.TestSupport;

namespace Daiko.Hostile.Tests;

/// <summary>Shared PKI for the hostile markets: a root and a localhost ECDSA certificate.</summary>
public sealed class HostilePki : IDisposable
{
    public TempDirectory Dir { get; } = new("daiko-hostile");

    public TestPki Pki { get; }

    public HostilePki() => Pki = TestPki.Create(Path.Combine(Dir.Path, "pki"));

    public void Dispose() => Dir.Dispose();
}

/// <summary>Alert descriptions as they appear on the wire.</summary>
internal static class Alert
{
    public const byte CloseNotify = 0, UnexpectedMessage = 10, IllegalParameter = 47, DecodeError = 50, UserCanceled = 90, UnsupportedExtension = 110;
}

/// <summary>Runs one hostile market against a real <c>daiko tls get</c> and collects what happened on both sides.</summary>
public abstract class HostileMarketBase(HostilePki pki)
{
    /// <summary>Peak RSS a one-shot fetch may reach; a .NET process starts around 60-90 MiB.</summary>
    protected const double MemoryBoundMiB = 200;

    protected HostilePki Pki => pki;

    protected async Task<(MeasuredResult Client, HostileOutcome Market)> FetchAsync(Func<HostileConnection, Task> script, HandshakePlan? plan = null, params string[] extra)
    {
        await using var market = new HostileTlsServer(pki.Pki.Server.Certificate, script, plan);
        var client = await MeasuredRun.DaikoAsync(["tls", "get", market.Url(), "--ca", pki.Pki.RootPath, .. extra], TimeSpan.FromSeconds(90));
        var outcome = await market.NextOutcomeAsync(TimeSpan.FromSeconds(30));
        Assert.True(client.PeakResidentMiB < MemoryBoundMiB, $"the client grew past {MemoryBoundMiB} MiB: {client}");
        return (client, outcome);
    }

    protected static void AssertExit(int expected, MeasuredResult client, HostileOutcome market) =>
        Assert.True(client.ExitCode == expected, $"expected exit {expected}; {client}\nmarket: {market}");

    protected static void AssertAlert(byte expected, MeasuredResult client, HostileOutcome market) =>
        Assert.True(market.ClientAlert == expected, $"expected alert {expected} on the wire, got {market.ClientAlert?.ToString() ?? "none"}; {client}\nmarket: {market}");

    protected static void AssertWithin(double seconds, MeasuredResult client) =>
        Assert.True(client.Elapsed.TotalSeconds < seconds, $"took {client.Elapsed.TotalSeconds:0.0} s, bound {seconds} s; {client}");
}

/// <summary>
/// <c>daiko tls get</c> against a market that cuts, forges or stalls: the exit code, the alert the client
/// put on the wire, and the time and memory the process took.
/// </summary>
public sealed class CutForgedAndStalledMarketTests(HostilePki pki) : HostileMarketBase(pki), IClassFixture<HostilePki>
{
    [Fact]
    public async Task Baseline_WellBehavedMarket_Succeeds()
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
            await c.SendCloseNotifyAsync();
        });
        AssertExit(0, client, market);
        Assert.Equal("hello", client.StandardOutput);
        Assert.True(market.HandshakeCompleted, market.ToString());
        AssertAlert(Alert.CloseNotify, client, market);
    }

    [Fact]
    public async Task EndDelimitedBody_CutWithoutCloseNotify_ExitsOne()
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe first half of a bod");
            c.CloseWithoutCloseNotify();
        });
        AssertExit(1, client, market);
        Assert.Contains("without close_notify: the response may be truncated", client.StandardError);
        AssertAlert(Alert.CloseNotify, client, market);
        AssertWithin(20, client);
    }

    [Fact]
    public async Task EndDelimitedBody_EndedWithCloseNotify_Succeeds()
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\n\r\nall of it");
            await c.SendCloseNotifyAsync();
            c.CloseWithoutCloseNotify();
        });
        AssertExit(0, client, market);
        Assert.Equal("all of it", client.StandardOutput);
        AssertAlert(Alert.CloseNotify, client, market);
    }

    /// <summary>A bare close after a complete Content-Length or chunked body is how many servers end: success. After incomplete framing it is a cut: exit 1.</summary>
    [Theory]
    [InlineData("Content-Length: 9\r\n\r\ncomplete!", 0)]
    [InlineData("Transfer-Encoding: chunked\r\n\r\n4\r\ncomp\r\n5\r\nlete!\r\n0\r\n\r\n", 0)]
    [InlineData("Content-Length: 100\r\n\r\nonly part", 1)]
    [InlineData("Transfer-Encoding: chunked\r\n\r\n4\r\ncomp\r\n5\r\nle", 1)]
    public async Task BareCloseAfterBody_IsSuccessOnlyWhenTheFramingIsComplete(string headAndBody, int exit)
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\n" + headAndBody);
            c.CloseWithoutCloseNotify();
        });
        AssertExit(exit, client, market);
        AssertAlert(Alert.CloseNotify, client, market);
        if (exit == 0) Assert.Equal("complete!", client.StandardOutput);
        else Assert.Contains("without close_notify", client.StandardError);
    }

    [Fact]
    public async Task ForgedPlaintextCloseNotify_IsRefusedAtOnce()
    {
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\n\r\nthe first half");
            // Anyone on the path can inject these 7 bytes.
            await c.SendPlainRecordAsync(21, [1, 0]);
            // Held open until the client answers (or 25 s): the refusal must come from the client, not from a close.
            await c.WaitForClientAlertAsync(TimeSpan.FromSeconds(25));
        });
        AssertExit(1, client, market);
        AssertAlert(Alert.UnexpectedMessage, client, market);
        // A whole process, .NET's start-up included, against the 25 s the market holds on for a client waiting for more.
        AssertWithin(20, client);
        Assert.Contains("unprotected Alert record", client.StandardError);
    }

    // The 5 s bound is measured at the market, from the moment it stalls to the client's alert: the
    // process's own wall time also holds .NET start-up, which under a loaded CI run alone can take seconds.
    [Fact]
    public async Task StallAfterHandshake_WithTimeout3_EndsUnder5Seconds()
    {
        var stalled = TimeSpan.Zero;
        var (client, market) = await FetchAsync(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart of");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            await c.WaitForClientAlertAsync(TimeSpan.FromSeconds(15));
            stalled = clock.Elapsed;
        }, null, "--timeout", "3");
        AssertExit(1, client, market);
        AssertAlert(Alert.UserCanceled, client, market);
        Assert.InRange(stalled.TotalSeconds, 2.5, 5);
        AssertWithin(15, client);
        Assert.Contains("timed out", client.StandardError);
    }

    [Fact]
    public async Task StallBeforeServerHello_WithTimeout3_EndsUnder5Seconds()
    {
        var stalled = TimeSpan.Zero;
        var (client, market) = await FetchAsync(_ => Task.CompletedTask, new HandshakePlan
        {
            BeforeServerHello = async c =>
            {
                await c.WaitForClientAlertAsync(TimeSpan.FromSeconds(15));
                stalled = c.SinceAccepted;
            },
        }, "--timeout", "3");
        AssertExit(1, client, market);
        AssertAlert(Alert.UserCanceled, client, market);
        // The client's 3 s run from the start of its handshake, and so does the market's clock, from the connection's
        // accept: a fresh process building its first ClientHello (JIT, key share) on a loaded machine can spend
        // seconds of them before the market sees the ClientHello (1.92 s was seen in a whole-suite run).
        // (The client's clock starts a little before its connection is accepted: 2.43 s was seen from the accept.)
        Assert.InRange(stalled.TotalSeconds, 2, 5);
        AssertWithin(15, client);
        Assert.Contains("did not complete within 3 s", client.StandardError);
    }
}
