namespace Daiko.TestSupport.Hosted;

/// <summary>A check of the fixture's own steps: a false condition stops the caller (a test or a benchmark) with the message.</summary>
internal static class Require
{
    public static void That(bool condition, string message)
    {
        if (!condition) throw new InvalidOperationException(message);
    }
}
