using Daiko.Cards;
using Daiko.Home.Authority;
using Daiko.Home.Control;
using Daiko.Home.Storage;
using Daiko.Home.Tests.Server;
using Daiko.Protocol;
using Daiko.Terminal;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Daiko.Home.Tests.Control;

/// <summary>
/// The revocation watchers (<see cref="RevocationWatcher"/>, <see cref="HomeStateWatcher"/>) over a real home
/// server's SQLite store, with real terminals' channels. The server's own looks are an hour apart here, so the
/// test's look is the first after what it changed: a look that came late (looks that failed for a while are only
/// logged) must still cut off every device no longer enrolled.
/// </summary>
[Collection("home card")]
public sealed class RevocationWatcherTests : IAsyncLifetime
{
    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start(options => options with { RevocationPoll = TimeSpan.FromHours(1) });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _home.DisposeAsync();

    /// <summary>The terminal's access card, unlocked with its PIN.</summary>
    private static AccessCard UnlockedAccess(string terminal)
    {
        var access = AccessCard.Open(terminal);
        Assert.True(access.Unlock(HomeFixture.AccessPin).Accepted);
        return access;
    }

    private async Task EnrollAsync(string terminal, string name, CancellationToken ct) =>
        await TerminalClient.EnrollAsync(terminal, _home.Endpoint, await _home.NewCodeAsync(name), HomeFixture.AccessPin, createAccessCard: HomeFixture.TestAccessCard, cancellationToken: ct);

    [Fact]
    public async Task ADeviceRevoked_AndItsNameEnrolledAgain_BeforeTheNextLook_LosesItsChannelAndSessionAtThatLook_AndIsRefused()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var server = _home.Server;
        var oldTerminal = Path.Combine(_home.Dir.Path, "terminal-old");
        await EnrollAsync(oldTerminal, "phone", cts.Token);
        using var access = UnlockedAccess(oldTerminal);
        await using var control = await TerminalClient.ConnectAsync(oldTerminal, access.DeviceKey, cts.Token);
        await new HomeControl(control).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);
        var oldId = (await server.Devices.FindAsync("phone", cts.Token))!.Id;
        var sessions = new SqlDeviceSessionStore(server.Store);
        Assert.NotNull(await sessions.FindAsync(oldId, cts.Token));

        // Revoked, and a new device enrolled under its name, with no look in between: the revoked row is gone.
        Assert.True(await server.Devices.RevokeAsync("phone", cts.Token));
        var newTerminal = Path.Combine(_home.Dir.Path, "terminal-new");
        await EnrollAsync(newTerminal, "phone", cts.Token);
        Assert.Null(await server.Devices.FindByIdAsync(oldId, cts.Token));
        Assert.NotEqual(oldId, (await server.Devices.FindAsync("phone", cts.Token))!.Id);
        // Until the next look the old device is still served on its channel, under its own session.
        Assert.Equal(CardState.CryptoReady, (await new HomeControl(control).CardStatusAsync(cts.Token)).State);

        // The next look, by the two watchers a home server (and each owner on a hosted node) polls with.
        await new RevocationWatcher(server.Devices, server.Connections, server.Delegation.Tickets, TimeProvider.System, NullLogger.Instance).PollOnceAsync(cts.Token);
        await new HomeStateWatcher(server.Card, server.Authority, new AssistGrants(TimeProvider.System), server.Devices, TimeProvider.System, NullLogger.Instance).PollAsync(cts.Token);

        var closed = Task.Delay(Timeout.Infinite, control.Closed).ContinueWith(_ => { }, TaskScheduler.Default);
        Assert.True(await Task.WhenAny(closed, Task.Delay(TimeSpan.FromSeconds(5), cts.Token)) == closed, "the old device's channel is still open after the look");
        Assert.Null(await sessions.FindAsync(oldId, cts.Token));
        var onItsChannel = await Assert.ThrowsAsync<ControlErrorException>(() => new HomeControl(control).CardStatusAsync(cts.Token));
        Assert.Equal(ErrorCode.Revoked, onItsChannel.Code);
        await using (var again = await TerminalClient.ConnectAsync(oldTerminal, access.DeviceKey, cts.Token))
        {
            var reconnected = await Assert.ThrowsAsync<ControlErrorException>(() => new HomeControl(again).CardStatusAsync(cts.Token));
            Assert.Equal(ErrorCode.UnknownDevice, reconnected.Code);
        }

        // The new device of that name is served (it has not unlocked: the card waits for its own PINs).
        using var newAccess = UnlockedAccess(newTerminal);
        await using var newControl = await TerminalClient.ConnectAsync(newTerminal, newAccess.DeviceKey, cts.Token);
        Assert.Equal(CardState.RemoteAccessWait, (await new HomeControl(newControl).CardStatusAsync(cts.Token)).State);
    }

    [Fact]
    public async Task ARevokedDevicesKey_ConnectingAgainAndAgain_IsAuditedOnceAMinute_NotOnceAConnection()
    {
        // A device key the owner revoked (stolen with its terminal) may connect as often as it likes: each connection is
        // refused, and the audit log, which the owner keeps bounded, is not filled with the refusals, pushing older lines out.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var server = _home.Server;
        var terminal = Path.Combine(_home.Dir.Path, "terminal-stolen");
        await EnrollAsync(terminal, "stolen", cts.Token);
        var id = (await server.Devices.FindAsync("stolen", cts.Token))!.Id;
        Assert.True(await server.Devices.RevokeAsync("stolen", cts.Token));
        using var access = UnlockedAccess(terminal);

        // Strangers' refusals spend their own lines first (10 a minute in all): the revoked device's line is written all the same.
        for (var i = 0; i < 12; i++) await server.Devices.AuditStrangerRefusalAsync($"address 198.51.100.{i}", "enroll", "refused: UnknownCode", cts.Token);
        for (var i = 0; i < 12; i++)
        {
            await using var control = await TerminalClient.ConnectAsync(terminal, access.DeviceKey, cts.Token);
            var refused = await Assert.ThrowsAsync<ControlErrorException>(() => new HomeControl(control).CardStatusAsync(cts.Token));
            Assert.Equal(ErrorCode.Revoked, refused.Code);
        }

        var lines = (await server.Devices.AuditLogAsync(1000, cts.Token)).Where(e => e.Action == "connect" && e.Outcome.StartsWith("refused: revoked device", StringComparison.Ordinal)).ToList();
        var line = Assert.Single(lines);
        Assert.Equal(id, line.Device);
    }
}
