using Microsoft.Extensions.Logging;

namespace Daiko.Home.Hosting;

/// <summary>
/// A look the home server repeats in the background until it stops (revocations, policies, payees, the
/// card's state and sessions, appliance readings). A failure leaves the last good state in use and is logged as a streak: its
/// first failure, then at most once every <see cref="SayAgainEvery"/> while it lasts, and one line when a
/// look works again. An outage of minutes writes a few lines, not one a poll for every watcher. A failure
/// the look does not expect (a bug) is logged with its stack at its streak's start and does not end the
/// looking: a revocation watcher that stopped would leave revoked devices' channels open for good.
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
            if (atOnce) await LookGuardedAsync(cancellationToken);
            while (await timer.WaitForNextTickAsync(cancellationToken)) await LookGuardedAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task LookGuardedAsync(CancellationToken cancellationToken)
    {
        try
        {
            await LookOnceAsync(cancellationToken);
        }
        catch (Exception e) when (cancellationToken.IsCancellationRequested && e is not OutOfMemoryException)
        {
            // Stopping: whatever the last look met (the store down at shutdown among them) ends the looking quietly.
            throw new OperationCanceledException(cancellationToken);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Not a failure the look expects: said with its stack at the streak's start, and looked at again at the next poll.
            Failed(e, unexpected: true);
        }
    }

    /// <summary>One look, its failure (if expected) logged as part of the streak; an unexpected one is thrown.</summary>
    public async Task LookOnceAsync(CancellationToken cancellationToken)
    {
        try
        {
            await look(cancellationToken);
            if (_failures == 0) return;
            logger.LookWorksAgain(what, _failures, Since);
            _failures = 0;
        }
        catch (Exception e) when (expected(e) && !cancellationToken.IsCancellationRequested)
        {
            Failed(e, unexpected: false);
        }
    }

    private void Failed(Exception e, bool unexpected)
    {
        var now = time.GetUtcNow();
        if (_failures++ == 0)
        {
            _since = _said = now;
            if (unexpected) logger.LookFailedUnexpectedly(what, e);
            else logger.LookFailed(what, e.Message, "the last good state stays in use; tried again at every poll");
        }
        else if (now - _said >= SayAgainEvery)
        {
            _said = now;
            logger.LookFailed(what, $"{e.GetType().Name}: {e.Message}", $"{_failures} failures in a row since {Since} UTC; said again at most once a minute");
        }
    }

    private string Since => _since.ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture);
}
