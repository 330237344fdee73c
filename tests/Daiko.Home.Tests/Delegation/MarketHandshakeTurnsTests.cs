using Daiko.Home.Delegation;
using Xunit;

namespace Daiko.Home.Tests.Delegation;

/// <summary>
/// The turns of the home server's handshakes with markets: the floor always runs, past it only while the
/// cores have time to spare, never past the ceiling; waiters go first come first served, a wait is bounded,
/// and a waiter that gives up leaves no turn taken; no device (nor a hosted owner's devices together) holds more
/// than its share while others wait.
/// </summary>
public sealed class MarketHandshakeTurnsTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(30);

    private static async Task<bool> WaitsAsync(Task task)
    {
        await Task.WhenAny(task, Task.Delay(200));
        return !task.IsCompleted;
    }

    [Fact]
    public async Task UpToTheFloor_StartAtOnce_EvenWhenTheCoresAreBusy_AndTheNextWaitsForOneToEnd()
    {
        var turns = new MarketHandshakeTurns(floor: 2, ceiling: 8, coresBusy: () => true);
        var first = await turns.TakeAsync(Long, CancellationToken.None);
        using var second = await turns.TakeAsync(Long, CancellationToken.None);

        var third = turns.TakeAsync(Long, CancellationToken.None);

        Assert.True(await WaitsAsync(third));
        Assert.Equal((2, 1), (turns.InFlight, turns.Waiting));
        first.Dispose();
        using var _ = await third.WaitAsync(Long);
        Assert.Equal((2, 0), (turns.InFlight, turns.Waiting));
    }

    [Fact]
    public async Task PastTheFloor_MoreStartWhileTheCoresAreFree_ButNeverPastTheCeiling()
    {
        var busy = false;
        var turns = new MarketHandshakeTurns(floor: 1, ceiling: 3, coresBusy: () => busy);
        var held = new List<IDisposable>();
        for (var i = 0; i < 3; i++) held.Add(await turns.TakeAsync(Long, CancellationToken.None).WaitAsync(Long));

        var fourth = turns.TakeAsync(Long, CancellationToken.None);
        Assert.True(await WaitsAsync(fourth));

        busy = true;
        held[0].Dispose();
        held[1].Dispose();
        // Two in flight, above the floor of one, and the cores busy: the waiter still waits.
        Assert.True(await WaitsAsync(fourth));
        held[2].Dispose();
        held.Clear();
        // None in flight: under the floor, so it starts, busy cores or not; the next waits again.
        held.Add(await fourth.WaitAsync(Long));
        Assert.Equal(1, turns.InFlight);
        var fifth = turns.TakeAsync(Long, CancellationToken.None);
        Assert.True(await WaitsAsync(fifth));

        busy = false;
        // A newcomer finds the cores free: the waiter ahead of it starts first, then it.
        var sixth = turns.TakeAsync(Long, CancellationToken.None);
        held.Add(await fifth.WaitAsync(Long));
        held.Add(await sixth.WaitAsync(Long));
        Assert.Equal(3, turns.InFlight);
        foreach (var turn in held) turn.Dispose();
        Assert.Equal(0, turns.InFlight);
    }

    [Fact]
    public async Task Waiters_AreLetIn_InTheOrderTheyCame()
    {
        var turns = new MarketHandshakeTurns(floor: 1, ceiling: 1, coresBusy: () => true);
        var running = await turns.TakeAsync(Long, CancellationToken.None);
        var order = new List<int>();
        var waiters = Enumerable.Range(0, 5).Select(async i =>
        {
            using var turn = await turns.TakeAsync(Long, CancellationToken.None);
            lock (order) order.Add(i);
        }).ToList();
        Assert.Equal(5, turns.Waiting);

        running.Dispose();
        await Task.WhenAll(waiters).WaitAsync(Long);

        Assert.Equal([0, 1, 2, 3, 4], order);
    }

    [Fact]
    public async Task AHandshakeATerminalWaitsOn_GoesBeforeTheBackgrounds_WhicheverCameFirst()
    {
        var turns = new MarketHandshakeTurns(floor: 1, ceiling: 1, coresBusy: () => true);
        var running = await turns.TakeAsync(Long, CancellationToken.None);
        var order = new List<string>();
        async Task Take(string name, bool background)
        {
            using var turn = await turns.TakeAsync(Long, CancellationToken.None, background);
            lock (order) order.Add(name);
        }
        var refill = Take("refill", background: true);
        var miss = Take("miss", background: false);
        var check = Take("check", background: true);
        var handoff = Take("handoff", background: false);

        running.Dispose();
        await Task.WhenAll(refill, miss, check, handoff).WaitAsync(Long);

        Assert.Equal(["miss", "handoff", "refill", "check"], order);
    }

    [Fact]
    public async Task AWaitPastItsBound_IsRefusedAsBusy_AndLeavesNoTurnTaken()
    {
        var turns = new MarketHandshakeTurns(floor: 1, ceiling: 1, coresBusy: () => true);
        var running = await turns.TakeAsync(Long, CancellationToken.None);

        var e = await Assert.ThrowsAsync<DelegationException>(() => turns.TakeAsync(TimeSpan.FromMilliseconds(100), CancellationToken.None));

        Assert.Equal(DelegationFailure.Busy, e.Failure);
        Assert.Contains("the home server is busy: its handshakes with markets did not make room", e.Message);
        Assert.Equal((1, 0), (turns.InFlight, turns.Waiting));
        running.Dispose();
        using var next = await turns.TakeAsync(TimeSpan.Zero, CancellationToken.None).WaitAsync(Long);
        Assert.Equal(1, turns.InFlight);
    }

    [Fact]
    public async Task AWaiterWhoseRequestEnds_IsCancelled_NotBusy_AndTheTurnGoesToTheNext()
    {
        var turns = new MarketHandshakeTurns(floor: 1, ceiling: 1, coresBusy: () => true);
        var running = await turns.TakeAsync(Long, CancellationToken.None);
        using var gone = new CancellationTokenSource();
        var leaving = turns.TakeAsync(Long, gone.Token);
        var staying = turns.TakeAsync(Long, CancellationToken.None);

        gone.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => leaving.WaitAsync(Long));
        running.Dispose();
        using var turn = await staying.WaitAsync(Long);
        Assert.Equal((1, 0), (turns.InFlight, turns.Waiting));
    }

    [Fact]
    public async Task ABackgroundWaitPastItsBound_LeavesTheQueue_AndATerminalsHandshakeStillGetsTheNextTurn()
    {
        var turns = new MarketHandshakeTurns(floor: 1, ceiling: 1, coresBusy: () => true);
        var running = await turns.TakeAsync(Long, CancellationToken.None);

        await Assert.ThrowsAsync<DelegationException>(() => turns.TakeAsync(TimeSpan.FromMilliseconds(100), CancellationToken.None, background: true));
        var terminal = turns.TakeAsync(Long, CancellationToken.None);

        Assert.Equal(1, turns.Waiting);
        running.Dispose();
        using var turn = await terminal.WaitAsync(Long);
        Assert.Equal((1, 0), (turns.InFlight, turns.Waiting));
    }

    [Fact]
    public async Task AWaitTheTimerCannotKeep_IsRefusedBeforeQueueing()
    {
        var turns = new MarketHandshakeTurns(floor: 1, ceiling: 1, coresBusy: () => true);
        using var running = await turns.TakeAsync(Long, CancellationToken.None);

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => turns.TakeAsync(TimeSpan.FromMilliseconds(-5), CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => turns.TakeAsync(TimeSpan.FromDays(60), CancellationToken.None));

        Assert.Equal((1, 0), (turns.InFlight, turns.Waiting));
    }

    [Fact]
    public async Task ATurnGivenBackTwice_CountsOnce()
    {
        var turns = new MarketHandshakeTurns(floor: 2, ceiling: 2, coresBusy: () => true);
        var turn = await turns.TakeAsync(Long, CancellationToken.None);
        using var other = await turns.TakeAsync(Long, CancellationToken.None);

        turn.Dispose();
        turn.Dispose();

        Assert.Equal(1, turns.InFlight);
    }

    /// <summary>A turn for <paramref name="holder"/>, waited for as long as a test may.</summary>
    private static Task<IDisposable> Take(MarketHandshakeTurns turns, TurnHolder holder, bool background = false) =>
        turns.TakeAsync(Long, CancellationToken.None, background, holder);

    private static readonly TurnHolder PhoneOfAlice = new("alice", "phone");
    private static readonly TurnHolder TillOfAlice = new("alice", "till");
    private static readonly TurnHolder PhoneOfBob = new("bob", "phone");

    [Fact]
    public async Task ADeviceAtItsShare_Waits_WhileAnotherDevicesHandshakeStarts_AndGetsTheTurnItsOwnGivesBack()
    {
        var turns = new MarketHandshakeTurns(floor: 4, ceiling: 4, coresBusy: () => true, deviceShare: 2);
        var first = await Take(turns, new TurnHolder(null, "phone"));
        using var second = await Take(turns, new TurnHolder(null, "phone"));

        var third = Take(turns, new TurnHolder(null, "phone"));
        Assert.True(await WaitsAsync(third));
        // Turns are free, and another device's handshake starts at once, ahead of the one waiting.
        using var tills = await Take(turns, new TurnHolder(null, "till")).WaitAsync(Long);
        Assert.Equal((3, 1), (turns.InFlight, turns.Waiting));

        first.Dispose();
        using var _ = await third.WaitAsync(Long);
        Assert.Equal((3, 0), (turns.InFlight, turns.Waiting));
    }

    [Fact]
    public async Task AWaiterAtItsShare_KeepsItsPlace_ButDoesNotHoldUpTheQueueBehindIt()
    {
        var turns = new MarketHandshakeTurns(floor: 3, ceiling: 3, coresBusy: () => true, deviceShare: 1, ownerShare: 3);
        var phones = await Take(turns, PhoneOfAlice);
        var phonesNext = Take(turns, PhoneOfAlice);
        var tills = await Take(turns, TillOfAlice).WaitAsync(Long);
        using var bobs = await Take(turns, PhoneOfBob).WaitAsync(Long);
        // No turn free now: the till's next waits behind the phone's.
        var tillsNext = Take(turns, TillOfAlice);
        Assert.True(await WaitsAsync(tillsNext));

        // The till gives one back: the phone, first in line, is at its share, so the till's own next goes.
        tills.Dispose();
        using var tillsSecond = await tillsNext.WaitAsync(Long);
        Assert.True(await WaitsAsync(phonesNext));

        phones.Dispose();
        using var phonesSecond = await phonesNext.WaitAsync(Long);
        Assert.Equal((3, 0), (turns.InFlight, turns.Waiting));
    }

    [Fact]
    public async Task AnOwnersDevicesTogether_HoldNoMoreThanTheOwnersShare_WhileAnotherOwnersStart()
    {
        var turns = new MarketHandshakeTurns(floor: 4, ceiling: 4, coresBusy: () => true, deviceShare: 1, ownerShare: 2);
        var phones = await Take(turns, PhoneOfAlice);
        using var tills = await Take(turns, TillOfAlice);

        var tv = Take(turns, new TurnHolder("alice", "tv"));
        Assert.True(await WaitsAsync(tv));
        using var bobs = await Take(turns, PhoneOfBob).WaitAsync(Long);
        // Bob's other device too: the floor has room, and only Alice is at her share.
        using var bobsTill = await Take(turns, new TurnHolder("bob", "till")).WaitAsync(Long);
        Assert.Equal((4, 1), (turns.InFlight, turns.Waiting));

        phones.Dispose();
        using var _ = await tv.WaitAsync(Long);
        Assert.Equal((4, 0), (turns.InFlight, turns.Waiting));
    }

    [Fact]
    public void TheShares_AreAQuarterAndAHalfOfTheFloor_AtLeastOne_AndAnOwnersIsNeverBelowADevices()
    {
        var machine = new MarketHandshakeTurns(floor: 32, ceiling: 1024);
        Assert.Equal((8, 16), (machine.DeviceShare, machine.OwnerShare));
        var small = new MarketHandshakeTurns(floor: 1, ceiling: 1);
        Assert.Equal((1, 1), (small.DeviceShare, small.OwnerShare));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MarketHandshakeTurns(floor: 8, ceiling: 8, deviceShare: 4, ownerShare: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MarketHandshakeTurns(floor: 8, ceiling: 8, deviceShare: 0));
    }

    [Fact]
    public async Task BackgroundWorkForAHolderAtItsShare_IsRefusedAtOnce_NotQueued_WhileAnothersBackgroundGoesAheadOfAnAtShareTerminalWaiter()
    {
        var turns = new MarketHandshakeTurns(floor: 4, ceiling: 4, coresBusy: () => true, deviceShare: 1);
        var phones = await Take(turns, PhoneOfAlice);
        var phonesNext = Take(turns, PhoneOfAlice);
        Assert.True(await WaitsAsync(phonesNext));

        var refused = await Assert.ThrowsAsync<DelegationException>(() => Take(turns, PhoneOfAlice, background: true).WaitAsync(TimeSpan.FromSeconds(2)));
        Assert.Equal(DelegationFailure.Busy, refused.Failure);
        Assert.Contains("this device: it already has 1 handshake with markets under way", refused.Message, StringComparison.Ordinal);
        Assert.Equal((1, 1), (turns.InFlight, turns.Waiting));
        // Bob's refill starts although Alice's phone's handshake, one a terminal waits on, was in line before it.
        using var bobsRefill = await Take(turns, PhoneOfBob, background: true).WaitAsync(Long);
        Assert.Equal((2, 1), (turns.InFlight, turns.Waiting));

        phones.Dispose();
        using var _ = await phonesNext.WaitAsync(Long);
    }

    [Fact]
    public async Task AnAtShareWaiterWhoseWaitEnds_IsBusy_AndItsHolderGetsItsWholeShareOnceItsTurnsAreBack()
    {
        var turns = new MarketHandshakeTurns(floor: 4, ceiling: 4, coresBusy: () => true, deviceShare: 2);
        var held = new List<IDisposable>
        {
            await Take(turns, PhoneOfAlice),
            await Take(turns, PhoneOfAlice),
        };

        var late = await Assert.ThrowsAsync<DelegationException>(() => turns.TakeAsync(TimeSpan.FromMilliseconds(100), CancellationToken.None, holder: PhoneOfAlice));
        Assert.Equal(DelegationFailure.Busy, late.Failure);
        // Said as the device's own doing, which its user can act on, not as the server's load.
        Assert.Contains("this device: it already has 2 handshakes with markets under way", late.Message, StringComparison.Ordinal);
        Assert.Equal((2, 0), (turns.InFlight, turns.Waiting));

        foreach (var turn in held) turn.Dispose();
        held.Clear();
        Assert.Equal(0, turns.InFlight);
        held.Add(await Take(turns, PhoneOfAlice).WaitAsync(Long));
        held.Add(await Take(turns, PhoneOfAlice).WaitAsync(Long));
        Assert.True(await WaitsAsync(Take(turns, PhoneOfAlice)));
        foreach (var turn in held) turn.Dispose();
    }

    [Fact]
    public async Task WorkNoDeviceAskedFor_IsHeldToNoShare()
    {
        var turns = new MarketHandshakeTurns(floor: 4, ceiling: 4, coresBusy: () => true, deviceShare: 1, ownerShare: 1);
        var held = new List<IDisposable>();
        for (var i = 0; i < 4; i++) held.Add(await Take(turns, TurnHolder.None).WaitAsync(Long));
        // An owner's own (the console's post) counts against the owner, not against a device.
        var owners = Take(turns, new TurnHolder("alice", null));
        Assert.True(await WaitsAsync(owners));
        held[0].Dispose();
        held.Add(await owners.WaitAsync(Long));
        // The phone's own waits too (a long bound, given up by cancelling: two short timers raced on a loaded machine).
        using var cancel = new CancellationTokenSource();
        var phones = turns.TakeAsync(Long, cancel.Token, holder: PhoneOfAlice);
        Assert.True(await WaitsAsync(phones));
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => phones);
        foreach (var turn in held) turn.Dispose();
    }

    [Fact]
    public async Task WithNoOneWaiting_ATurnGivenBack_DoesNotLookAtTheCores_OnlyATurnPastTheFloorDoes()
    {
        var looks = 0;
        var turns = new MarketHandshakeTurns(floor: 1, ceiling: 4, coresBusy: () => { Interlocked.Increment(ref looks); return false; });

        var first = await Take(turns, PhoneOfAlice);
        Assert.Equal(0, looks);
        var second = await Take(turns, PhoneOfBob);
        Assert.Equal(1, looks);
        first.Dispose();
        second.Dispose();

        Assert.Equal(1, looks);
    }
}
