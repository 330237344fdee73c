using System.Security.Cryptography;
using Daiko.Cards.Site;
using Daiko.TestSupport;

namespace Daiko.Cards.Tests;

/// <summary>
/// A hosted site's token (every owner's keys in one token, as a node uses it) on a real SoftHSM2: how its sessions
/// are shared among owners. Overlap is shown by signatures held inside the token, never by speed.
/// </summary>
public sealed class SiteTokenTests : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private readonly TempDirectory _dir = new("daiko-site-token");

    public void Dispose() => _dir.Dispose();

    private SiteToken CreateToken()
    {
        var tokens = Path.Combine(_dir.Path, "tokens");
        Directory.CreateDirectory(tokens);
        var conf = Path.Combine(_dir.Path, "softhsm2.conf");
        File.WriteAllText(conf, $"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n");
        return SiteToken.Create(new SiteTokenOptions(SoftHsmToken.DefaultModule, conf, "daiko-site-test"), "so-pin-1234", "site-pin-1234");
    }

    /// <summary>
    /// One owner's signatures asked all at once hold at most that owner's share of the token's sessions (the rest wait
    /// for a turn), and another owner's signature is made meanwhile; once let go, every one of them is made and verifies.
    /// A signature whose card was locked while it waited (a TLS one waiting without a thread, a money one on its thread) is
    /// refused at its turn, and gives its turn back. Red before the
    /// share: the first owner's six signatures were inside the token at once and held every session.
    /// </summary>
    [Fact]
    public async Task OneOwnersSignatures_HoldAtMostItsShareOfTheSessions_AndAnotherOwnerSignsMeanwhile()
    {
        using var token = CreateToken();
        Assert.True(token.Size >= 2, "the token offers one session only");
        var alice = token.GenerateOwnerKeys("alice").Tls;
        var bob = token.GenerateOwnerKeys("bob").Tls;
        using var release = new ManualResetEventSlim();
        int inside = 0, most = 0, aliceInside = 0, aliceMost = 0;
        token.Leased = owner =>
        {
            Raise(ref most, Interlocked.Increment(ref inside));
            if (owner == "alice")
            {
                Raise(ref aliceMost, Interlocked.Increment(ref aliceInside));
                Assert.True(release.Wait(Bound), "the held signatures were never let go");
                Interlocked.Decrement(ref aliceInside);
            }
            Interlocked.Decrement(ref inside);
        };
        var hashes = Enumerable.Range(0, 6).Select(i => SHA256.HashData([(byte)i])).ToList();
        var asked = hashes.Select(h => Task.Run(() => token.SignHashAsync("alice", OwnerKey.Tls, h, () => { }, CancellationToken.None).AsTask())).ToList();
        for (var look = 0; look < 200 && Volatile.Read(ref aliceInside) < token.OwnerShare; look++) await Task.Delay(50);
        await Task.Delay(300);
        Assert.Equal(token.OwnerShare, Volatile.Read(ref aliceMost));

        var bobsHash = SHA256.HashData("bob"u8);
        var bobs = await Task.Run(() => token.SignHashAsync("bob", OwnerKey.Tls, bobsHash, () => { }, CancellationToken.None).AsTask()).WaitAsync(Bound);
        Assert.True(Verifies(bob, bobsHash, bobs));
        Assert.All(asked, t => Assert.False(t.IsCompleted));

        release.Set();
        var signatures = await Task.WhenAll(asked).WaitAsync(Bound);
        for (var i = 0; i < hashes.Count; i++) Assert.True(Verifies(alice, hashes[i], signatures[i]));
        Assert.Equal(token.OwnerShare, aliceMost);
        Assert.True(most <= token.Size, $"{most} sessions signed at once on a token of {token.Size}");

        await Assert.ThrowsAsync<CardNotReadyException>(() =>
            token.SignHashAsync("bob", OwnerKey.Tls, bobsHash, () => throw new CardNotReadyException("the home card is locked"), CancellationToken.None).AsTask());
        var after = await token.SignHashAsync("bob", OwnerKey.Tls, bobsHash, () => { }, CancellationToken.None).AsTask().WaitAsync(Bound);
        Assert.True(Verifies(bob, bobsHash, after));
        // A money signature (waiting on its thread) is refused at its turn the same way, and gives its turn back.
        Assert.Throws<CardNotReadyException>(() => token.SignHash("bob", OwnerKey.Tls, bobsHash, () => throw new CardNotReadyException("the home card is locked")));
        Assert.True(Verifies(bob, bobsHash, token.SignHash("bob", OwnerKey.Tls, bobsHash, () => { })));
    }

    /// <summary>
    /// A signature refused at its owner's turn (the card locked while it waited; the check that finds it may read the store)
    /// takes no token session: the sessions stay for signatures that will be made. A check that passes at the turn and
    /// fails inside the session still refuses. Red before: each refusal leased a session first.
    /// </summary>
    [Fact]
    public async Task ASignatureRefusedAtItsTurn_TakesNoTokenSession()
    {
        using var token = CreateToken();
        token.GenerateOwnerKeys("carol");
        var leased = 0;
        token.Leased = owner => { if (owner == "carol") Interlocked.Increment(ref leased); };
        var hash = SHA256.HashData("carol"u8);
        Action locked = () => throw new CardNotReadyException("the home card is locked");

        await Assert.ThrowsAsync<CardNotReadyException>(() => token.SignHashAsync("carol", OwnerKey.Tls, hash, locked, CancellationToken.None).AsTask());
        Assert.Throws<CardNotReadyException>(() => token.SignHash("carol", OwnerKey.Purse, hash, locked));
        Assert.Equal(0, Volatile.Read(ref leased));

        var checks = 0;
        Action lockedInside = () => { if (Interlocked.Increment(ref checks) > 1) throw new CardNotReadyException("the home card is locked"); };
        await Assert.ThrowsAsync<CardNotReadyException>(() => token.SignHashAsync("carol", OwnerKey.Tls, hash, lockedInside, CancellationToken.None).AsTask());
        Assert.Equal(1, Volatile.Read(ref leased));
    }

    private static void Raise(ref int most, int now)
    {
        for (var seen = Volatile.Read(ref most); now > seen; seen = Volatile.Read(ref most))
        {
            if (Interlocked.CompareExchange(ref most, now, seen) == seen) return;
        }
    }

    private static bool Verifies(byte[] subjectPublicKeyInfo, byte[] hash, byte[] signature)
    {
        using var key = ECDsa.Create();
        key.ImportSubjectPublicKeyInfo(subjectPublicKeyInfo, out _);
        return key.VerifyHash(hash, signature);
    }
}
