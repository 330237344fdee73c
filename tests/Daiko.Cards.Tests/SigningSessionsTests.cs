using System.Security.Cryptography;
using Daiko.TestSupport;

namespace Daiko.Cards.Tests;

/// <summary>
/// The home card's signing sessions on a real SoftHSM2 token: two signatures run at once (each on a
/// session of its own under the one PIN2 login), and leaving crypto-ready waits for a signature in
/// flight, after which none is made. Overlap is shown by ordering (both signers inside the token at the
/// same moment), never by speed.
/// </summary>
public sealed class SigningSessionsTests : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private readonly TempDirectory _dir = new("daiko-signing");

    public void Dispose() => _dir.Dispose();

    private HomeCard ReadyCard(Action? leased) => ReadyCards.Create(new HomeCardOptions(_dir.Path), leased);

    private static byte[] Sign(HomeCard card, byte[] content) => ReadyCards.Sign(card, content);

    [Fact]
    public void TwoSignatures_RunAtOnce_OnSessionsOfTheirOwn()
    {
        // Each signer, once it holds its session, waits until the other holds one too: with one session
        // (or the card's lock held across a signature) the first waits alone and the barrier times out.
        using var bothInside = new Barrier(2);
        var met = new bool[2];
        var turn = -1;
        using var card = ReadyCard(() =>
        {
            var mine = Interlocked.Increment(ref turn);
            if (mine < 2) met[mine] = bothInside.SignalAndWait(Bound);
        });
        Assert.True(card.Token.Signing!.Size >= 2, "the pool offers one session only");
        var contents = new[] { HomeCardTests.CertificateVerifyContent(), HomeCardTests.CertificateVerifyContent() };
        var signatures = new byte[2][];
        var threads = Enumerable.Range(0, 2).Select(i => new Thread(() => signatures[i] = Sign(card, contents[i]))).ToList();
        threads.ForEach(t => t.Start());
        Assert.All(threads, t => Assert.True(t.Join(Bound * 2), "a signer did not return"));

        Assert.True(met[0] && met[1], "the two signatures were never inside the token at the same time");
        using var key = card.PublicEcKey();
        for (var i = 0; i < 2; i++) Assert.True(key.VerifyData(contents[i], signatures[i], HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
    }

    [Fact]
    public void Lock_WaitsForTheSignatureInFlight_AndNoneIsMadeAfterIt()
    {
        using var inside = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var first = true;
        using var card = ReadyCard(() =>
        {
            if (!first) return;
            first = false;
            inside.Set();
            Assert.True(release.Wait(Bound));
        });
        var content = HomeCardTests.CertificateVerifyContent();
        byte[]? signature = null;
        var signer = new Thread(() => signature = Sign(card, content));
        signer.Start();
        Assert.True(inside.Wait(Bound), "the signature did not start");

        var locker = new Thread(card.Lock);
        locker.Start();
        // The lock cannot finish (log the token out) while the signature it met is in the token.
        Assert.False(locker.Join(TimeSpan.FromMilliseconds(300)), "the card was locked under a signature in flight");
        release.Set();
        Assert.True(signer.Join(Bound) && locker.Join(Bound));

        using var key = card.PublicEcKey();
        Assert.True(key.VerifyData(content, signature!, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence), "the signature begun while ready completes");
        Assert.Equal(HomeCardState.Locked, card.State);
        Assert.Throws<CardNotReadyException>(() => Sign(card, HomeCardTests.CertificateVerifyContent()));
    }

    [Fact]
    public void TlsSignature_BeyondWhatThePoolTakes_WaitsWithoutHoldingItsCallersThread()
    {
        // Every signature that reaches the token stays there until released: the pool's worth of them
        // fill it, and one more must come back at once as a signature still to come, not block its caller
        // (a handshake waiting for the card would hold a pool thread, and many make the runtime add threads).
        using var release = new ManualResetEventSlim();
        var inside = 0;
        using var card = ReadyCard(() =>
        {
            Interlocked.Increment(ref inside);
            release.Wait(Bound);
        });
        try
        {
            var size = card.Token.Signing!.Size;
            var holders = Enumerable.Range(0, size).Select(_ => new Thread(() => Sign(card, HomeCardTests.CertificateVerifyContent()))).ToList();
            holders.ForEach(t => t.Start());
            Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref inside) == size, Bound), "the pool's worth of signatures did not all reach the token");

            var content = HomeCardTests.CertificateVerifyContent();
            ValueTask<byte[]> later = default;
            var caller = new Thread(() => later = card.TlsSigner.SignAsync(Tls.SignatureScheme.EcdsaSecp256r1Sha256, content, default));
            caller.Start();
            Assert.True(caller.Join(Bound), "a signature beyond the pool held its caller's thread until the token had room");
            Assert.False(later.IsCompleted, "a signature was made while the pool was full");
            Assert.Equal(size, Volatile.Read(ref inside));

            release.Set();
            Assert.All(holders, t => Assert.True(t.Join(Bound), "a signer did not return"));
            var signature = later.AsTask().WaitAsync(Bound).GetAwaiter().GetResult();
            using var key = card.PublicEcKey();
            Assert.True(key.VerifyData(content, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
        }
        finally
        {
            release.Set();
        }
    }
}
