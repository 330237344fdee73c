using Daiko.Fuzz;

namespace Daiko.Tls.Tests.Fuzz;

/// <summary>
/// Replays the committed fuzzing corpora of the TLS parsers, the record layer and certificate/key
/// import (fuzz/corpus) through the same targets the campaigns run: every input is accepted or refused
/// with the target's typed exception, and the real messages among them are accepted.
/// </summary>
public sealed class CorpusReplayTests
{
    [Theory]
    [InlineData("tls13")]
    [InlineData("tls12")]
    [InlineData("records")]
    [InlineData("pki")]
    public void EveryCorpusInput_IsAcceptedOrRefusedCleanly(string target)
    {
        var report = CorpusReplay.Run(target);
        Assert.True(report.Inputs >= 5 && report.Accepted > 0, report.ToString());
    }
}
