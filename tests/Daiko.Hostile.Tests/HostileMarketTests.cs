using Daiko.Hostile.Tests.Peer;
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

/// <summary>
/// <c>daiko tls get</c> against a hostile TLS 1.3 market, one misbehaviour at a time: the exit code, the
/// alert the client put on the wire, and the time and memory the process took.
/// </summary>
public sealed class HostileMarketTests(HostilePki pki) : IClassFixture<HostilePki>
{
    private const byte CloseNotify = 0, UnexpectedMessage = 10, UserCanceled = 90;

    private HostileTlsServer Market(Func<HostileConnection, Task> script, HandshakePlan? plan = null) => new(pki.Pki.Server.Certificate, script, plan);

    private Task<MeasuredResult> TlsGetAsync(HostileTlsServer market, params string[] extra) =>
        MeasuredRun.DaikoAsync(["tls", "get", market.Url(), "--ca", pki.Pki.RootPath, .. extra]);

    private static string Body(int bytes) => new('x', bytes);

    [Fact]
    public async Task Baseline_WellBehavedMarket_Succeeds()
    {
        await using var market = Market(async c =>
        {
            await c.ReadRequestAsync();
            await c.SendAsync($"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
            await c.SendCloseNotifyAsync();
        });
        var result = await TlsGetAsync(market);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("hello", result.StandardOutput);
        var outcome = await market.NextOutcomeAsync(TimeSpan.FromSeconds(20));
        Assert.True(outcome.HandshakeCompleted, outcome.ToString());
        Assert.Equal(CloseNotify, outcome.ClientAlert);
    }
}
