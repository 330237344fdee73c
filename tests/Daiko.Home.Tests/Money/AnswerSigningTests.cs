using Daiko.Home.Money;
using Xunit;

namespace Daiko.Home.Tests.Money;

/// <summary>
/// The batch's answer signing on its own (the steps here stand for the card's signatures): helpers sign
/// beside the committing thread, the answers come back in order, a helper's failure reaches the batch,
/// and a batch given up waits for the signature in hand and signs nothing more.
/// </summary>
public sealed class AnswerSigningTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    [Fact]
    public void Answers_ComeBackInTheOrderTheirStepsWereAdded_WhoeverSignedThem()
    {
        var committer = Environment.CurrentManagedThreadId;
        using var signedElsewhere = new ManualResetEventSlim();
        using var signing = new AnswerSigning(helpers: 2, capacity: 64);
        for (var i = 0; i < 64; i++)
        {
            var n = i;
            signing.Add(() =>
            {
                if (Environment.CurrentManagedThreadId != committer) signedElsewhere.Set();
                Thread.SpinWait(20_000);
                return [(byte)n];
            });
        }
        // The committing thread signs only inside Finish: what a helper signs before it, it signed beside the moves.
        Assert.True(signedElsewhere.Wait(Bound), "no answer was signed beside the committing thread");

        var answers = signing.Finish();

        Assert.Equal(Enumerable.Range(0, 64).Select(i => (byte)i), answers.Select(a => Assert.Single(a)));
    }

    [Fact]
    public void ABatchOfOne_IsSignedByTheCommittingThreadAlone()
    {
        var committer = Environment.CurrentManagedThreadId;
        var signer = -1;
        using var signing = new AnswerSigning(helpers: 2, capacity: 8);
        signing.Add(() =>
        {
            signer = Environment.CurrentManagedThreadId;
            return [1];
        });

        Assert.Equal([1], Assert.Single(signing.Finish()));
        Assert.Equal(committer, signer);
    }

    [Fact]
    public void ASignatureThatFailsOnAHelper_FailsTheBatch_AndTheRestAreNotSigned()
    {
        var committer = Environment.CurrentManagedThreadId;
        using var onHelper = new ManualResetEventSlim();
        var signedAfter = 0;
        var failed = false;
        using var signing = new AnswerSigning(helpers: 1, capacity: 8);
        signing.Add(() =>
        {
            // The first step runs on the helper (started by the second step) or not at all before the
            // test sees it: the committing thread only signs inside Finish.
            Assert.NotEqual(committer, Environment.CurrentManagedThreadId);
            onHelper.Set();
            failed = true;
            throw new InvalidOperationException("the token failed this signature");
        });
        signing.Add(() => [2]);
        Assert.True(onHelper.Wait(Bound), "no helper took the first step");
        var deadline = DateTime.UtcNow + Bound;
        while (!signing.Failed && DateTime.UtcNow < deadline) Thread.Sleep(1);
        Assert.True(signing.Failed);
        signing.Add(() =>
        {
            Interlocked.Increment(ref signedAfter);
            return [3];
        });

        var error = Assert.Throws<InvalidOperationException>(() => signing.Finish());

        Assert.True(failed);
        Assert.Equal("the token failed this signature", error.Message);
        Assert.Equal(0, signedAfter);
    }

    [Fact]
    public void ABatchGivenUp_WaitsForTheSignatureInHand_AndSignsNothingMore()
    {
        using var inHand = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var finished = false;
        var later = 0;
        var signing = new AnswerSigning(helpers: 1, capacity: 8);
        signing.Add(() =>
        {
            inHand.Set();
            Assert.True(release.Wait(Bound));
            finished = true;
            return [1];
        });
        signing.Add(() =>
        {
            Interlocked.Increment(ref later);
            return [2];
        });
        Assert.True(inHand.Wait(Bound), "no helper took the first step");

        var disposal = new Thread(signing.Dispose);
        disposal.Start();
        // Disposal marks the batch given up, then waits for the signature in hand: once its thread waits, the mark is made.
        var deadline = DateTime.UtcNow + Bound;
        while ((disposal.ThreadState & ThreadState.WaitSleepJoin) == 0 && disposal.IsAlive && DateTime.UtcNow < deadline) Thread.Sleep(1);
        Assert.True(disposal.IsAlive, "disposal returned while a signature was in hand");
        release.Set();

        Assert.True(disposal.Join(Bound));
        Assert.True(finished);
        Assert.Equal(0, Volatile.Read(ref later));
    }
}
