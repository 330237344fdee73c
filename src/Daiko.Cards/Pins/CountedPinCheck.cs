namespace Daiko.Cards.Pins;

/// <summary>How one PIN's counter is read and written inside a card's persisted state.</summary>
internal sealed record PinCounter<T>(Func<T, int> Failures, Func<T, int, T> WithFailures, Func<T, bool> IsExhausted, Func<T, T> Exhaust);

/// <summary>The outcome of a counted attempt: exhausted before it was tried, or the verdict with the state after.</summary>
internal readonly record struct CountedAttempt<T>(bool WasExhausted, bool Correct, T After)
{
    /// <summary>This attempt used up the last try.</summary>
    public bool NowExhausted => !WasExhausted && !Correct;
}

/// <summary>
/// The one counted-login guard of both cards. The whole attempt runs under the card's exclusive file
/// lock, so attempts from every thread and process are checked one at a time. The attempt is counted
/// durably before the PIN is tried: a crash in between costs a try and never gives one, and a count
/// that reached the limit without a verdict (that crash) is the last strike. An attempt that throws
/// gave no verdict on the PIN: the try is given back and the exception goes to the caller.
/// </summary>
internal static class CountedPinCheck
{
    public const int MaxTries = 3;

    public static CountedAttempt<T> Run<T>(CounterFile<T> file, PinCounter<T> counter, Func<bool> tryPin) where T : class, new() => file.Locked(() =>
    {
        var before = file.Read();
        var failures = counter.Failures(before);
        if (!counter.IsExhausted(before) && failures >= MaxTries)
        {
            before = counter.Exhaust(before);
            file.Write(before);
        }
        if (counter.IsExhausted(before)) return new CountedAttempt<T>(true, false, before);
        var counted = counter.WithFailures(before, failures + 1);
        file.Write(counted);
        bool correct;
        try
        {
            correct = tryPin();
        }
        catch
        {
            file.Write(before);
            throw;
        }
        var after = correct ? counter.WithFailures(counted, 0) : failures + 1 >= MaxTries ? counter.Exhaust(counted) : counted;
        file.Write(after);
        return new CountedAttempt<T>(false, correct, after);
    });

    public static int TriesLeft(int failures) => Math.Max(0, MaxTries - failures);
}

/// <summary>The sentences a user reads about PINs, in one place.</summary>
internal static class PinSentences
{
    public const string HomeCardDisabled = "the card is disabled after 3 wrong PINs; unblock it with the admin code";

    public const string AccessCardDestroyed = "the access card was destroyed after 3 wrong PINs; enroll this terminal again";

    public static string NowDisabled(string pinName) =>
        $"wrong {pinName}: the card is now disabled after {CountedPinCheck.MaxTries} wrong entries; unblock it with the admin code";

    public static string Wrong(string pinName, int left) => $"wrong {pinName}: {left} {(left == 1 ? "try" : "tries")} left";
}
