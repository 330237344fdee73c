using Daiko.Fuzz;

namespace Daiko.Protocol.Tests;

/// <summary>
/// Replays the committed fuzzing corpora of the control frames, the ticket and session codecs and the
/// COSE money messages (fuzz/corpus) through the same targets the campaigns run: every input is
/// accepted or refused with the target's typed exception, what is read writes back to the same bytes,
/// and the real messages among them are accepted.
/// </summary>
public sealed class CorpusReplayTests
{
    [Theory]
    [InlineData("control")]
    [InlineData("codecs")]
    [InlineData("money")]
    public void EveryCorpusInput_IsAcceptedOrRefusedCleanly(string target)
    {
        var report = CorpusReplay.Run(target);
        Assert.True(report.Inputs >= 5 && report.Accepted > 0, report.ToString());
    }
}
