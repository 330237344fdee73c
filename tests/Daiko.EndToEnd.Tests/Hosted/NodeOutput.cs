using System.Diagnostics;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests.Hosted;

/// <summary>What a node printed: how often a line part appears, and waiting until it has appeared often enough.</summary>
internal static class NodeOutput
{
    public static int Count(string text, string part)
    {
        var (count, at) = (0, 0);
        while ((at = text.IndexOf(part, at, StringComparison.Ordinal)) >= 0) (count, at) = (count + 1, at + part.Length);
        return count;
    }

    public static async Task WaitForCountAsync(ExternalProcess node, string part, int count, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (Count(node.Output, part) < count)
        {
            Assert.True(clock.Elapsed < timeout, $"'{part}' printed fewer than {count} times within {timeout.TotalSeconds:0} s:\n{node.Output}");
            await Task.Delay(50);
        }
    }
}
