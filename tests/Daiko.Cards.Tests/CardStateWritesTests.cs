using Daiko.Cards.Pins;
using Daiko.TestSupport;

namespace Daiko.Cards.Tests;

/// <summary>
/// What the home card writes to its state file and when: PIN counts durably before each answer, the idle
/// deadline (status for other processes, never a decision) at most once a second.
/// </summary>
public sealed class CardStateWritesTests : IDisposable
{
    private const string Pin1 = "1111";
    private const string Pin2 = "2222";

    private readonly TempDirectory _dir = new("daiko-card-writes");
    private readonly ManualClock _clock = new();
    private readonly CountingStore _store;

    public CardStateWritesTests() => _store = new CountingStore(new LocalCounterStore(Path.Combine(_dir.Path, "state.json")));

    private HomeCardOptions Options => new(_dir.Path) { Time = _clock, CounterStore = _store };

    public void Dispose() => _dir.Dispose();

    private HomeCard ReadyCard()
    {
        var card = HomeCard.Initialize(Options, HomeCardKeyType.P256, Pin1, Pin2, "admin-code-123");
        Assert.True(card.EnterPin1(Pin1).Accepted);
        Assert.True(card.EnterPin2(Pin2).Accepted);
        return card;
    }

    [Fact]
    public void TheDirectoryAStateFileIsRenamedInto_IsItselfFlushedToDisk_AndAMissingOneIsSaidNotToBe()
    {
        // .NET opens no directory as a file (it answers "access denied"): the flush must go through open(2) and fsync(2).
        Assert.True(CardFiles.FsyncDirectory(_dir.Path));
        Assert.False(CardFiles.FsyncDirectory(Path.Combine(_dir.Path, "gone")));
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void APrivateFile_IsWrittenBesideItselfAfresh_NeverThroughALinkPlantedAtItsNewName_NorIntoACopyLeftThere()
    {
        var victim = Path.Combine(_dir.Path, "victim.txt");
        File.WriteAllText(victim, "untouched");
        var linked = Path.Combine(_dir.Path, "linked.json");
        File.CreateSymbolicLink(CardFiles.NewPath(linked), victim);
        var left = Path.Combine(_dir.Path, "left.json");
        File.WriteAllText(CardFiles.NewPath(left), "a copy a crash left, 0644");
        File.SetUnixFileMode(CardFiles.NewPath(left), (UnixFileMode)Convert.ToInt32("644", 8));

        CardFiles.WritePrivate(linked, "one"u8.ToArray());
        CardFiles.WritePrivate(left, "two"u8.ToArray());

        Assert.Equal("untouched", File.ReadAllText(victim));
        Assert.Equal("one", File.ReadAllText(linked));
        Assert.Null(new FileInfo(linked).LinkTarget);
        Assert.Equal("two", File.ReadAllText(left));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(left));
        Assert.False(File.Exists(CardFiles.NewPath(left)));
    }

    [Fact]
    public void Touches_RewriteTheStateFileAtMostOnceASecond_AndTheStatusDeadlineIsNeverLate()
    {
        using var card = ReadyCard();
        var writes = _store.Writes;
        for (var i = 0; i < 90; i++)
        {
            _clock.Now += TimeSpan.FromMilliseconds(10);
            card.Touch();
        }
        Assert.Equal(writes, _store.Writes);
        var real = card.GetStatus().IdleExpiresAt!.Value;
        var shown = HomeCard.ReadStatus(Options).IdleExpiresAt!.Value;
        Assert.InRange(real - shown, TimeSpan.Zero, TimeSpan.FromSeconds(1));

        _clock.Now += TimeSpan.FromSeconds(1);
        card.Touch();
        Assert.Equal(writes + 1, _store.Writes);
        Assert.Equal(card.GetStatus().IdleExpiresAt, HomeCard.ReadStatus(Options).IdleExpiresAt);
        Assert.Equal(HomeCardState.CryptoReady, HomeCard.ReadStatus(Options).State);
    }

    [Fact]
    public void AWrongPin_WhileTouchesAreDeferred_IsInTheFileBeforeItsAnswer()
    {
        using var card = ReadyCard();
        for (var i = 0; i < 10; i++)
        {
            _clock.Now += TimeSpan.FromMilliseconds(10);
            card.Touch();
        }
        var answer = card.EnterPin2("0000");

        Assert.Equal(PinOutcome.Wrong, answer.Outcome);
        // Read from the file, as another process (or this one after kill -9) would.
        Assert.Equal(2, HomeCard.ReadStatus(Options).Pin2TriesLeft);
        Assert.Equal(2, answer.TriesLeft);
    }

    /// <summary>The real local store, with its writes counted.</summary>
    private sealed class CountingStore(LocalCounterStore inner) : ICardCounterStore
    {
        public int Writes { get; private set; }

        public byte[]? Read() => inner.Read();

        public TResult Locked<TResult>(Func<TResult> action) => inner.Locked(action);

        public void Write(byte[] state)
        {
            inner.Write(state);
            Writes++;
        }
    }
}
