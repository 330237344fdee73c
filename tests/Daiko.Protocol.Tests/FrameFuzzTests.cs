using Daiko.Protocol.Wire;
using Daiko.TestSupport;

namespace Daiko.Protocol.Tests;

/// <summary>Bounded mutation fuzzing of control frames: every input is decoded or refused with a ProtocolException, nothing else.</summary>
public sealed class FrameFuzzTests
{
    [Fact]
    public void MutatedBodies_AreDecodedOrRefusedAsProtocolErrors()
    {
        var seeds = SampleMessages.All().Select(m => ControlFrame.EncodeBody(17, m)).ToList();

        var report = MutationFuzzer.Run(seeds, body =>
        {
            try
            {
                ControlFrame.Decode(body);
            }
            catch (ProtocolException e) when (e.RequestId is not null)
            {
                // Answerable: it must be a bad-request (or unknown-request), never internal.
                Assert.True(e.Code is ErrorCode.BadRequest or ErrorCode.UnknownRequest, e.Message);
                throw;
            }
        }, e => e is ProtocolException, iterations: 20_000, timeBudget: TimeSpan.FromSeconds(20));

        Assert.True(report.Rejected > 0 && report.Accepted > 0, $"{report}");
    }

    [Fact]
    public void MutatedFrames_AreReadOrRefused()
    {
        var seeds = SampleMessages.All().Select(m => ControlFrame.Encode(17, m)).ToList();

        var report = MutationFuzzer.Run(seeds, frame =>
        {
            var header = new byte[4];
            using var stream = new MemoryStream(frame);
            while (ControlFrame.ReadAsync(stream, header, CancellationToken.None).AsTask().GetAwaiter().GetResult().Envelope is not null) { }
        }, e => e is ProtocolException or EndOfStreamException, iterations: 10_000, timeBudget: TimeSpan.FromSeconds(15));

        Assert.True(report.Rejected > 0, $"{report}");
    }
}
