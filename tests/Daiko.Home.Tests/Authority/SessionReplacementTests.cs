using Daiko.Cards;
using Daiko.Home.Authority;
using Daiko.Home.Handlers;
using Daiko.Home.Storage;
using Daiko.Money;
using Daiko.TestSupport;
using Daiko.Tls;
using Xunit;

namespace Daiko.Home.Tests.Authority;

/// <summary>
/// A device's session ended and opened again elsewhere (another node's lock and unlock): whichever finds it, a
/// request of the device or the sweep, every request of the device waits until what was held under the old
/// session is let go (its agents told to drop the old stock), so that no answer under the new session is
/// overtaken by that notice. DeviceAuthority alone, on a real SQLite store; the card is a stand-in that is
/// always crypto-ready (the card's part is not what is tested here).
/// </summary>
public sealed class SessionReplacementTests : IDisposable
{
    private readonly TestDatabase _database = new(StoreKind.Sqlite, "daiko-replace");
    private readonly TaskCompletionSource _letGo = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _replacements;

    public void Dispose() => _database.Dispose();

    private (DeviceAuthority Authority, SqlDeviceSessionStore Store) Authority()
    {
        var store = new SqlDeviceSessionStore(HomeStore.Sqlite(_database.SqlitePath));
        var authority = new DeviceAuthority(store, new CardGate(new ReadyCard()), TimeProvider.System, TimeSpan.FromMinutes(10))
        {
            // As the home server's: let go of the old session's holdings and tell the agents, which here takes until the test says.
            Replaced = async (_, _) =>
            {
                Interlocked.Increment(ref _replacements);
                await _letGo.Task;
            },
        };
        return (authority, store);
    }

    private static async Task<(DeviceAuthority, SqlDeviceSessionStore)> ServedUnderAFirstSessionAsync((DeviceAuthority Authority, SqlDeviceSessionStore Store) parts)
    {
        var now = DateTimeOffset.UtcNow;
        await parts.Store.SaveAsync(new DeviceSession("phone", "first", now, now));
        Assert.Null(await parts.Authority.RefusalAsync("phone", CancellationToken.None));
        // Another node's lock and unlock: the same device, a new session.
        await parts.Store.SaveAsync(new DeviceSession("phone", "opened-elsewhere", now, now));
        return parts;
    }

    [Fact]
    public async Task ARequestThatFindsTheReplacement_AndOneThatComesWhileItsHoldingsGo_BothWaitForThem()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (authority, _) = await ServedUnderAFirstSessionAsync(Authority());

        var finder = authority.RefusalAsync("phone", cts.Token);
        while (Volatile.Read(ref _replacements) == 0) await Task.Delay(10, cts.Token);
        var next = authority.RefusalAsync("phone", cts.Token);
        await Task.Delay(300, cts.Token);

        Assert.False(finder.IsCompleted, "the request that found the replacement was served before the old holdings went");
        Assert.False(next.IsCompleted, "a request that came meanwhile was served before the old holdings went");
        _letGo.SetResult();
        Assert.Null(await finder);
        Assert.Null(await next);
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
        await Task.Delay(300, cts.Token);

        Assert.False(next.IsCompleted, "the device's request was served before the old holdings went");
        _letGo.SetResult();
        Assert.Null(await next);
        Assert.Equal(1, _replacements);
    }

    /// <summary>A card that is crypto-ready and does nothing else.</summary>
    private sealed class ReadyCard : IHomeCard
    {
        public string CardId => "stand-in";

        public IReadOnlyList<byte[]> CertificateChain => [];

        public ITlsSigner TlsSigner => throw new NotSupportedException();

        public HomeCardState State => HomeCardState.CryptoReady;

        public HomeCardStatus GetStatus() => throw new NotSupportedException();

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
