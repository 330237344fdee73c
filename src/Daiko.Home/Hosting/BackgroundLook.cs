using Microsoft.Extensions.Logging;

namespace Daiko.Home.Hosting;

/// <summary>
/// A look the home server repeats in the background until it stops (revocations, policies, payees, the
/// card's state, appliance readings). A failure the look expects (the store down or busy, a file caught
/// mid-write) leaves the last good state in use and is logged as a streak: its first failure, then at
/// most once every <see cref="SayAgainEvery"/> while it lasts, and one line when a look works again. An
/// outage of minutes writes a few lines, not one a poll for every watcher.
/// </summary>
public sealed class BackgroundLook(string what, Func<CancellationToken, Task> look, Func<Exception, bool> expected, TimeProvider time, ILogger logger)
{
    public static readonly TimeSpan SayAgainEvery = TimeSpan.FromMinutes(1);

    private int _failures;
    private DateTimeOffset _since;
    private DateTimeOffset _said;

    /// <summary>Looks every <paramref name="poll"/> (first after one poll, or at once with <paramref name="atOnce"/>) until cancelled.</summary>
    public async Task RunAsync(TimeSpan poll, CancellationToken cancellationToken, bool atOnce = false)
    {
        using var timer = new PeriodicTimer(poll, time);
        try
        {
            if (atOnce) await LookOnceAsync(cancellationToken);
            while (await timer.WaitForNextTickAsync(cancellationToken)) await LookOnceAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>One look, its failure (if expected) logged as part of the streak; an unexpected one is thrown.</summary>
    public async Task LookOnceAsync(CancellationToken cancellationToken)
    {
        try
        {
            await look(cancellationToken);
            if (_failures == 0) return;
            logger.LookWorksAgain(what, _failures, _since.ToString("HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture));
            _failures = 0;
        }
        catch (Exception e) when (expected(e) && !cancellationToken.IsCancellationRequested)
        {
            var now = time.GetUtcNow();
            if (_failures++ == 0)
            {
                _since = _said = now;
                logger.LookFailed(what, e.Message, "the last good state stays in use; tried again at every poll");
            }
            else if (now - _said >= SayAgainEvery)
            {
                _said = now;
                logger.LookFailed(what, e.Message, $"{_failures} failures in a row since {_since.ToString("HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture)} UTC; said again at most once a minute");
            }
        }
    }
}
