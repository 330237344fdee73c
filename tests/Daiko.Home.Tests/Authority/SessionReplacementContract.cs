using Daiko.Cards;
using Daiko.Home.Authority;
using Daiko.Home.Handlers;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Storage;
using Daiko.Money;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Authority;

/// <summary>
/// A device's session ended and opened again elsewhere (another node's lock and unlock): whichever finds it, a
/// request of the device or the sweep, every request of the device waits until what was held under the old
/// session is let go (its agents told to drop the old stock), so that no answer under the new session is
/// overtaken by that notice. DeviceAuthority alone, on a real SQLite store and on a real PostgreSQL server (the
/// hosted nodes' store, where a lock and unlock elsewhere is another node's); the card is a stand-in that is always
/// crypto-ready (the card's part is not what is tested here).
/// </summary>
public abstract class SessionReplacementContract(StoreKind kind) : StoreContract(kind, "daiko-replace")
{
    private readonly TaskCompletionSource _letGo = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _replacements;
    private int _lost;
    private readonly ReadyCard _card = new();

    private (DeviceAuthority Authority, PausingStore Store) Authority()
    {
        var store = new PausingStore(new SqlDeviceSessionStore(Store()));
        var authority = new DeviceAuthority(store, new CardGate(_card), TimeProvider.System, TimeSpan.FromMinutes(10))
        {
            // As the home server's: let go of the old session's holdings and tell the agents, which here takes until the test says.
            Replaced = async (_, _) =>
            {
                Interlocked.Increment(ref _replacements);
                await _letGo.Task;
            },
            Lost = (_, _) =>
            {
                Interlocked.Increment(ref _lost);
                return Task.CompletedTask;
            },
        };
        return (authority, store);
    }

    private static async Task<(DeviceAuthority, PausingStore)> ServedUnderAFirstSessionAsync((DeviceAuthority Authority, PausingStore Store) parts)
    {
        var now = DateTimeOffset.UtcNow;
        await parts.Store.SaveAsync(new DeviceSession("phone", "first", now, now));
        Assert.Null(await parts.Authority.RefusalAsync("phone", CancellationToken.None));
        // Another node's lock and unlock: the same device, a new session.
        await parts.Store.SaveAsync(new DeviceSession("phone", "opened-elsewhere", now, now));
        return parts;
    }

    /// <summary>Served under a first session, with what is held under a session let go at once when it ends.</summary>
    private async Task<(DeviceAuthority, PausingStore, DateTimeOffset)> ServedWithHoldingsLetGoAtOnceAsync(CancellationToken ct)
    {
        var (authority, store) = Authority();
        var now = DateTimeOffset.UtcNow;
        await store.SaveAsync(new DeviceSession("phone", "first", now, now), ct);
        Assert.Null(await authority.RefusalAsync("phone", ct));
        _letGo.SetResult();
        return (authority, store, now);
    }

    /// <summary>
    /// Starts <paramref name="start"/> (a request or an unlock), holds it right after its first read of the store while
    /// <paramref name="meanwhile"/> runs (another node, the device, a second request), then lets it go on; the started task.
    /// </summary>
    private static async Task<TTask> OvertakenAfterItsReadAsync<TTask>(PausingStore store, Func<TTask> start, Func<Task> meanwhile, CancellationToken ct)
        where TTask : Task
    {
        var read = store.PauseNextRead();
        var started = start();
        await read.Reached.WaitAsync(ct);
        await meanwhile();
        read.Go();
        return started;
    }

    /// <summary>Until the old session's holdings are being let go (<see cref="DeviceAuthority.Replaced"/> was told).</summary>
    private async Task LettingGoAsync(CancellationToken ct)
    {
        while (Volatile.Read(ref _replacements) == 0) await Task.Delay(10, ct);
    }

    /// <summary>
    /// A second later, <paramref name="requests"/> are still unanswered (each named for the failure message); then the
    /// holdings go, and each is answered as served.
    /// </summary>
    private async Task HeldUntilLetGoAsync(CancellationToken ct, params (Task<ErrorReply?> Request, string What)[] requests)
    {
        await Task.Delay(1000, ct);
        foreach (var (request, what) in requests) Assert.False(request.IsCompleted, $"{what} was served before the old holdings went");
        _letGo.SetResult();
        foreach (var (request, _) in requests) Assert.Null(await request);
    }

    [Fact]
    public async Task ARequestThatFindsTheReplacement_AndOneThatComesWhileItsHoldingsGo_BothWaitForThem()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, _) = await ServedUnderAFirstSessionAsync(Authority());

        var finder = authority.RefusalAsync("phone", cts.Token);
        await LettingGoAsync(cts.Token);
        var next = authority.RefusalAsync("phone", cts.Token);

        await HeldUntilLetGoAsync(cts.Token, (finder, "the request that found the replacement"), (next, "a request that came meanwhile"));
        Assert.Equal(1, _replacements);
        // Served under the new session from then on, its work not cancelled by the replacement it waited for.
        Assert.False(authority.Work("phone").IsCancellationRequested);
        Assert.Null(await authority.RefusalAsync("phone", cts.Token));
        Assert.Equal(1, _replacements);
    }

    [Fact]
    public async Task TheSweepFindsTheReplacement_WithoutWaitingForItsHoldingsToGo_AndTheDevicesNextRequestWaits()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, _) = await ServedUnderAFirstSessionAsync(Authority());

        await authority.SweepAsync(cts.Token).WaitAsync(TimeSpan.FromSeconds(10), cts.Token);
        Assert.Equal(1, _replacements);
        var next = authority.RefusalAsync("phone", cts.Token);

        await HeldUntilLetGoAsync(cts.Token, (next, "the device's request"));
        Assert.Equal(1, _replacements);
    }

    [Fact]
    public async Task ARequestThatReadTheOldSessionBeforeTheReplacementWasFound_ReadsAgain_AndDoesNotMoveTheDeviceBack()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, store, now) = await ServedWithHoldingsLetGoAtOnceAsync(cts.Token);

        // A request reads "first" and is held there; meanwhile another node replaces the session and a second request finds it.
        var late = await OvertakenAfterItsReadAsync(store, () => authority.RefusalAsync("phone", cts.Token), async () =>
        {
            await store.SaveAsync(new DeviceSession("phone", "opened-elsewhere", now, now));
            Assert.Null(await authority.RefusalAsync("phone", cts.Token));
            Assert.Equal(1, _replacements);
        }, cts.Token);

        Assert.Null(await late);
        // Not moved back to the session that is gone (which would let go of what the new one was handed, a second time).
        Assert.Equal(1, _replacements);
        Assert.Null(await authority.RefusalAsync("phone", cts.Token));
        Assert.Equal(1, _replacements);
    }

    [Fact]
    public async Task AnUnlockHereAfterTheSessionWasReplacedElsewhere_HoldsUpTheDevicesRequestsUntilTheOldHoldingsGo()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, _) = await ServedUnderAFirstSessionAsync(Authority());

        var unlock = authority.OpenAsync("phone", cts.Token);
        await LettingGoAsync(cts.Token);
        var request = authority.RefusalAsync("phone", cts.Token);

        await HeldUntilLetGoAsync(cts.Token, (request, "the device's request"));
        await unlock;
        Assert.Equal(1, _replacements);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AnUnlockHere_WhoseReadALockElsewhereOvertook_LetsTheEndedSessionsHoldingsGo_AndOpensItsOwn(bool openedAgain)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, store, now) = await ServedWithHoldingsLetGoAtOnceAsync(cts.Token);

        // The unlock reads "first" (still the session served here) and is held there; meanwhile another node locks the
        // device, and maybe unlocks it again.
        await (await OvertakenAfterItsReadAsync(store, () => authority.OpenAsync("phone", cts.Token), async () =>
        {
            if (openedAgain) await store.SaveAsync(new DeviceSession("phone", "opened-elsewhere", now, now));
            else Assert.True(await store.EndAsync("phone", cts.Token));
        }, cts.Token)).WaitAsync(cts.Token);

        // What was held under the ended session went, and was not carried over to the session opened here ...
        Assert.Equal(1, _replacements);
        // ... which is the device's session now (the unlock came last), served here.
        var stored = await store.FindAsync("phone", cts.Token);
        Assert.NotNull(stored);
        Assert.DoesNotContain(stored.SessionId, new[] { "first", "opened-elsewhere" });
        Assert.Null(await authority.RefusalAsync("phone", cts.Token));
        Assert.False(authority.Work("phone").IsCancellationRequested);
        Assert.Equal(1, _replacements);
    }

    [Fact]
    public async Task ARequestThatReadASessionAnUnlockHereFoundEnded_ReadsAgain_AndIsServedUnderTheUnlocksSession()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, store, _) = await ServedWithHoldingsLetGoAtOnceAsync(cts.Token);

        // A request reads "first" and is held there; meanwhile another node locks the device and it unlocks here.
        var late = await OvertakenAfterItsReadAsync(store, () => authority.RefusalAsync("phone", cts.Token), async () =>
        {
            Assert.True(await store.EndAsync("phone", cts.Token));
            await authority.OpenAsync("phone", cts.Token);
            Assert.Equal(1, _replacements);
        }, cts.Token);

        // Served, under the unlock's session: not under the ended one, which the next request would find replaced
        // (letting go a second time of what the new session was handed).
        Assert.Null(await late);
        Assert.Null(await authority.RefusalAsync("phone", cts.Token));
        Assert.Equal(1, _replacements);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ARequestWhoseReadAnUnlockHereOvertook_IsServedUnderTheUnlocksSession_AndNothingIsLetGo(bool touches)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, store, _) = await ServedWithHoldingsLetGoAtOnceAsync(cts.Token);
        // Last used a while ago, the device's next request touches the session it reads; used just now, it does not.
        var then = DateTimeOffset.UtcNow.AddSeconds(touches ? -30 : 0);
        await store.SaveAsync(new DeviceSession("phone", "first", then, then), cts.Token);

        // A request reads "first" and is held there; meanwhile the device unlocks here, and "first" makes way for the new session.
        var late = await OvertakenAfterItsReadAsync(store, () => authority.RefusalAsync("phone", cts.Token),
            () => authority.OpenAsync("phone", cts.Token), cts.Token);

        // "first" is gone because of the unlock here (its touch, if any, says so): the request reads again and is served,
        // and the new session (which the unlock carried the device's holdings over to) is neither ended nor let go.
        Assert.Null(await late);
        Assert.Null(await authority.RefusalAsync("phone", cts.Token));
        Assert.Equal(0, _lost);
        Assert.Equal(0, _replacements);
    }

    [Fact]
    public async Task TwoUnlocksOfOneDeviceHere_TakeTurns_AndTheSecondCarriesTheHoldingsOverToo()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, store, _) = await ServedWithHoldingsLetGoAtOnceAsync(cts.Token);

        // The first unlock has written its session and is held before it moves the device on to it.
        var written = store.PauseNextReplace();
        var first = authority.OpenAsync("phone", cts.Token);
        await written.Reached.WaitAsync(cts.Token);
        var second = authority.OpenAsync("phone", cts.Token);
        await Task.Delay(500, cts.Token);
        Assert.False(second.IsCompleted, "the second unlock did not wait for the first");
        written.Go();
        await Task.WhenAll(first, second).WaitAsync(cts.Token);

        // Neither took the other's new session for one opened elsewhere: nothing was let go.
        Assert.Equal(0, _replacements);
        Assert.Null(await authority.RefusalAsync("phone", cts.Token));
        Assert.Equal(0, _replacements);
    }

    [Fact]
    public async Task ARequestHere_WhoseViewOfTheCardIsOlderThanAnUnlockElsewhere_EndsNoSession_AndIsServed()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, store) = Authority();
        // This process last saw the card wait for PIN2; then the phone unlocked it through another node.
        _card.Viewed = HomeCardState.RemoteAccessWait;
        var now = DateTimeOffset.UtcNow;
        await store.SaveAsync(new DeviceSession("phone", "opened-elsewhere", now, now), cts.Token);

        // Another device of the owner, without a session of its own, asks here before this process's view is renewed.
        Assert.Equal(ErrorCode.Locked, (await authority.RefusalAsync("tablet", cts.Token))?.Code);
        // The phone's session is not ended for a view of the card older than it; the phone is served, here too.
        Assert.Equal("opened-elsewhere", (await store.FindAsync("phone", cts.Token))?.SessionId);
        Assert.Null(await authority.RefusalAsync("phone", cts.Token));
        await authority.SweepAsync(cts.Token);
        Assert.NotNull(await store.FindAsync("phone", cts.Token));

        // When a fresh look agrees that the card left crypto-ready, every session ends.
        _card.Fresh = HomeCardState.Locked;
        Assert.Equal(ErrorCode.CardNotReady, (await authority.RefusalAsync("phone", cts.Token))?.Code);
        Assert.Null(await store.FindAsync("phone", cts.Token));
    }

    /// <summary>The real store, with a read that can be held after it returned (a request caught between its read and its use).</summary>
    private sealed class PausingStore(IDeviceSessionStore inner) : IDeviceSessionStore
    {
        private Pause? _next;

        public Pause PauseNextRead() => _next = new Pause();

        public async Task<DeviceSession?> FindAsync(string deviceId, CancellationToken cancellationToken = default)
        {
            var found = await inner.FindAsync(deviceId, cancellationToken);
            if (Interlocked.Exchange(ref _next, null) is { } pause) await pause.HoldAsync();
            return found;
        }

        public Task SaveAsync(DeviceSession session, CancellationToken cancellationToken = default) => inner.SaveAsync(session, cancellationToken);

        public Pause PauseNextReplace() => _nextReplace = new Pause();

        private Pause? _nextReplace;

        public async Task<bool> ReplaceAsync(DeviceSession session, string? replacing, CancellationToken cancellationToken = default)
        {
            var replaced = await inner.ReplaceAsync(session, replacing, cancellationToken);
            if (Interlocked.Exchange(ref _nextReplace, null) is { } pause) await pause.HoldAsync();
            return replaced;
        }

        public Task<bool> TouchAsync(string deviceId, string sessionId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
            inner.TouchAsync(deviceId, sessionId, at, cancellationToken);

        public Task<bool> EndAsync(string deviceId, CancellationToken cancellationToken = default) => inner.EndAsync(deviceId, cancellationToken);

        public Task<int> EndAllAsync(CancellationToken cancellationToken = default) => inner.EndAllAsync(cancellationToken);

        public Task<IReadOnlyList<DeviceSession>> ListAsync(CancellationToken cancellationToken = default) => inner.ListAsync(cancellationToken);
    }

    private sealed class Pause
    {
        private readonly TaskCompletionSource _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _go = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Reached => _reached.Task;

        public void Go() => _go.SetResult();

        public Task HoldAsync()
        {
            _reached.SetResult();
            return _go.Task;
        }
    }

    /// <summary>A card that is crypto-ready and does nothing else.</summary>
    /// <summary>
    /// Crypto-ready unless a test says otherwise: <see cref="Viewed"/> is this process's kept view of the card (a hosted
    /// card keeps "not ready" up to 200 ms), <see cref="Fresh"/> what a fresh look at the card's row finds.
    /// </summary>
    private sealed class ReadyCard : IHomeCard
    {
        public HomeCardState Viewed { get; set; } = HomeCardState.CryptoReady;

        public HomeCardState Fresh { get; set; } = HomeCardState.CryptoReady;

        public string CardId => "stand-in";

        public IReadOnlyList<byte[]> CertificateChain => [];

        public ITlsSigner TlsSigner => throw new NotSupportedException();

        public HomeCardState State => Viewed;

        public HomeCardStatus GetStatus() => new(Fresh, 3, 3, HomeCardKeyType.P256, false, CardId, null, "stand-in");

        public PinResult EnterPin1(string pin) => throw new NotSupportedException();

        public PinResult EnterPin2(string pin) => throw new NotSupportedException();

        public void Done()
        {
        }

        public void Lock() => throw new NotSupportedException();

        public void Touch()
        {
        }

        public bool Refresh() => false;

        public IMoneySigner OpenMoneySigner() => throw new NotSupportedException();

        public System.Security.Cryptography.ECDsa PursePublicKey() => throw new NotSupportedException();

        public long? ReadPurseCounter() => null;

        public void AdvancePurseCounter(long value) => throw new NotSupportedException();
    }
}

public sealed class SqliteSessionReplacementTests() : SessionReplacementContract(StoreKind.Sqlite)
{
}

[Collection("home card")]
public sealed class PostgresSessionReplacementTests() : SessionReplacementContract(StoreKind.Postgres)
{
}
