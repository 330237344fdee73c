using Daiko.Home.Hosting;
using Daiko.TestSupport;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Daiko.Home.Tests.Hosting;

public sealed class BackgroundLookTests
{
    private sealed class Lines : ILogger
    {
        public List<string> Said { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Said.Add(formatter(state, exception));
    }

    [Fact]
    public async Task AnOutage_IsSaidAtItsStart_AtMostOnceAMinuteWhileItLasts_AndAtItsEnd()
    {
        var clock = new ManualClock(new DateTimeOffset(2026, 12, 7, 10, 0, 0, TimeSpan.Zero));
        var log = new Lines();
        var down = true;
        var look = new BackgroundLook("reading the revoked devices",
            _ => down ? throw new IOException("connection refused") : Task.CompletedTask, e => e is IOException, clock, log);

        for (var i = 0; i < 20; i++)
        {
            await look.LookOnceAsync(CancellationToken.None);
            clock.Now += TimeSpan.FromSeconds(2.5);
        }
        // 20 failed looks over 50 s: one line.
        Assert.Equal(["reading the revoked devices failed: connection refused (the last good state stays in use; tried again at every poll)"], log.Said);

        clock.Now += TimeSpan.FromSeconds(10);
        await look.LookOnceAsync(CancellationToken.None);
        await look.LookOnceAsync(CancellationToken.None);
        Assert.Equal(2, log.Said.Count);
        Assert.Equal("reading the revoked devices failed: IOException: connection refused (21 failures in a row since 2026-12-07 10:00:00 UTC; said again at most once a minute)", log.Said[1]);

        down = false;
        await look.LookOnceAsync(CancellationToken.None);
        await look.LookOnceAsync(CancellationToken.None);
        Assert.Equal(3, log.Said.Count);
        Assert.Equal("reading the revoked devices works again, after 22 failure(s) since 2026-12-07 10:00:00 UTC", log.Said[2]);

        // A new outage is a new streak, said at once.
        down = true;
        await look.LookOnceAsync(CancellationToken.None);
        Assert.Equal(4, log.Said.Count);
        Assert.EndsWith("(the last good state stays in use; tried again at every poll)", log.Said[3], StringComparison.Ordinal);
    }

    [Fact]
    public async Task AFailureTheLookDoesNotExpect_IsSaidWithItsStack_AndTheLookingGoesOn_UntilStopped()
    {
        var log = new Lines();
        var looks = 0;
        using var stop = new CancellationTokenSource();
        var look = new BackgroundLook("reading the payees", _ =>
        {
            if (++looks == 3) stop.Cancel();
            throw new InvalidOperationException("a bug");
        }, e => e is IOException, TimeProvider.System, log);

        await Assert.ThrowsAsync<InvalidOperationException>(() => look.LookOnceAsync(CancellationToken.None));
        // Run: the bug does not end the looking; the stop (which the third look's failure meets) ends it quietly.
        await look.RunAsync(TimeSpan.FromMilliseconds(10), stop.Token, atOnce: true);
        Assert.Equal(3, looks);
        Assert.Equal(["reading the payees failed unexpectedly (tried again at every poll; the last good state stays in use)"], log.Said);
    }
}
