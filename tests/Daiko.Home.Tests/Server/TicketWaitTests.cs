using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.TestSupport;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>
/// How long the home server waits for a market's tickets on a resume that missed its cache: as long as
/// a handshake with the market may take (a loaded market sends them late, not never), and not at all
/// for a market known to send none. Real openssl s_server markets, reached through a proxy that can
/// hold records back and counts the connections made.
/// </summary>
[Collection("home card")]
public sealed class TicketWaitTests : IAsyncLifetime
{
    private static readonly TimeSpan MarketTimeout = TimeSpan.FromSeconds(6);

    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start(o => o with { MarketTimeout = MarketTimeout });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _home.DisposeAsync();

    [Fact]
    public async Task TicketsThatComeLate_ButWithinTheMarketTimeout_StillServeAResume()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await OpenSslServer.StartAsync(_home.Pki);
        // The market's first record after the client's last flight (its NewSessionTickets, the records
        // behind it wait too) is held for 4 s: longer than a fixed 2 s wait, within the market timeout.
        var (proxy, seen) = HoldingAfterFinished(market.Port, 1, TimeSpan.FromSeconds(4));
        using var _proxy = proxy;
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        // The terminal resumes with the market itself; only the home server's handshake goes through the proxy.
        var connector = new DelegatedConnector(control) { TerminalRoute = (_, _) => ("127.0.0.1", market.Port) };

        var session = await connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Resume, cancellationToken: cts.Token);
        await using var _ = session.Stream;

        Assert.True(seen() >= 1);
        Assert.True(session.Tls!.Resumed);
    }

    [Theory]
    [InlineData(DelegationMode.Resume)]
    [InlineData(DelegationMode.Handoff)]
    public async Task AMarketThatBreaksTheConnection_WhileItsTicketsAreAwaited_FailsTheDelegation_NotTheHomeServer(DelegationMode mode)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await OpenSslServer.StartAsync(_home.Pki);
        // The market's first record after the client's last flight (a NewSessionTicket) arrives corrupted.
        var clientFinished = 0;
        var corrupted = 0;
        using var proxy = RecordTamperingProxy.Start(market.Port, (direction, type, content) =>
        {
            if (direction == RecordDirection.ClientToServer && type == 23) Volatile.Write(ref clientFinished, 1);
            else if (direction == RecordDirection.ServerToClient && Volatile.Read(ref clientFinished) == 1 && Interlocked.Exchange(ref corrupted, 1) == 0) content[^1] ^= 0x01;
            return content;
        });
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);

        var e = await Assert.ThrowsAsync<ControlErrorException>(() => new DelegatedConnector(control).ConnectAsync("localhost", proxy.Port, mode, cancellationToken: cts.Token));

        Assert.Equal(1, Volatile.Read(ref corrupted));
        Assert.Equal(ErrorCode.HandshakeFailed, e.Code);
    }

    /// <summary>
    /// A proxy to the market at <paramref name="port"/> that holds back the market's <paramref name="nth"/>
    /// record after the client's last flight (its tickets; the records behind it wait too) for
    /// <paramref name="hold"/>; <c>Seen</c> counts the market's records after that flight so far.
    /// </summary>
    /// <param name="armed">when given, only the handshake of a ClientHello sent once this says true counts (records of connections before it pass untouched)</param>
    internal static (RecordTamperingProxy Proxy, Func<int> Seen) HoldingAfterFinished(int port, int nth, TimeSpan hold, Func<bool>? armed = null)
    {
        var clientHello = 0;
        var clientFinished = 0;
        var after = 0;
        var proxy = RecordTamperingProxy.Start(port,
            (direction, type, content) =>
            {
                if (direction == RecordDirection.ClientToServer && type == 22 && (armed is null || armed())) Volatile.Write(ref clientHello, 1);
                if (direction == RecordDirection.ClientToServer && type == 23 && Volatile.Read(ref clientHello) == 1) Volatile.Write(ref clientFinished, 1);
                return content;
            },
            (direction, _, _) => direction == RecordDirection.ServerToClient && Volatile.Read(ref clientFinished) == 1 && Interlocked.Increment(ref after) == nth
                ? hold
                : TimeSpan.Zero);
        return (proxy, () => Volatile.Read(ref after));
    }

    [Fact]
    public async Task AMissOnAMarketThatSendsOneTicket_IsRefilledAheadOnceItsFlightIsOver()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await OpenSslServer.StartAsync(_home.Pki, new TlsPeerOptions { Tickets = 1 });
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        var session = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, cancellationToken: cts.Token);
        await using (session.Stream) Assert.True(session.Tls!.Resumed);

        // The one ticket went to the terminal, so the cache is empty: the home server fetches ahead for the next resume.
        var ready = 0;
        for (var i = 0; i < 100 && ready == 0; i++)
        {
            await Task.Delay(100, cts.Token);
            ready = (await connector.PrefetchAsync("localhost", market.Port, minimum: 0, cancellationToken: cts.Token)).Ready;
        }
        Assert.Equal(1, ready);
    }

    [Fact]
    public async Task ASecondHandoffThatSawNoTicket_HasTheMarketCheckedInTheBackground_AndAMarketThatSendsNoneIsThenKnownAsSuch()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        // gnutls-serv: it serves the check beside the handed-over session (openssl s_server takes one connection at a time).
        using var market = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path, new TlsPeerOptions { Tickets = 0 });
        using var proxy = RecordTamperingProxy.Start(market.Port, (_, _, content) => content);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        // A market met once costs no handshake more; met again without a ticket, it is checked.
        for (var i = 0; i < 2; i++)
        {
            var session = await connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Handoff, cancellationToken: cts.Token);
            await session.Stream.DisposeAsync();
            if (i == 0)
            {
                await Task.Delay(500, cts.Token);
                Assert.Equal(1, proxy.Connections);
            }
        }

        // The handoff's brief wait proves nothing; the background handshake's full wait (the market timeout) does.
        Daiko.Home.Delegation.MarketProfile? profile = null;
        for (var i = 0; i < 200 && profile is not { NoTicketsConfirmed: true }; i++)
        {
            await Task.Delay(100, cts.Token);
            profile = await _home.Server.Delegation.Profiles.FindAsync("localhost", proxy.Port, "localhost", null, cts.Token);
        }
        Assert.True(profile is { NoTicketsConfirmed: true, Tls13: true }, $"the market is not known to send no tickets: {profile}");
        Assert.Equal(3, proxy.Connections);
        // From then on a resume is refused at once, with no handshake.
        var resume = await Assert.ThrowsAsync<ControlErrorException>(() => connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Resume, cancellationToken: cts.Token));
        Assert.Equal(ErrorCode.NoTicket, resume.Code);
        Assert.Equal(3, proxy.Connections);
    }

    [Fact]
    public async Task AMarketThatBreaksTheBackgroundCheck_IsNotCheckedAgainOnEveryHandoff()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await GnuTlsServer.StartAsync(_home.Pki, _home.Dir.Path, new TlsPeerOptions { Tickets = 0 });
        // The third ClientHello (the background check's, after two handoffs) reaches the market garbled: the check fails.
        var hellos = 0;
        using var proxy = RecordTamperingProxy.Start(market.Port, (direction, type, content) =>
        {
            if (direction == RecordDirection.ClientToServer && type == 22 && Interlocked.Increment(ref hellos) == 3) content[^1] ^= 0x5a;
            return content;
        });
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        for (var i = 0; i < 2; i++) await (await connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Handoff, cancellationToken: cts.Token)).Stream.DisposeAsync();
        for (var i = 0; i < 100 && Volatile.Read(ref hellos) < 3; i++) await Task.Delay(50, cts.Token);
        await Task.Delay(1000, cts.Token);
        Assert.Equal(3, proxy.Connections);
        Assert.False((await _home.Server.Delegation.Profiles.FindAsync("localhost", proxy.Port, "localhost", null, cts.Token))!.NoTicketsConfirmed);

        // Later handoffs still see no ticket, and the market is not checked again (within ten minutes).
        for (var i = 0; i < 3; i++) await (await connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Handoff, cancellationToken: cts.Token)).Stream.DisposeAsync();
        await Task.Delay(1000, cts.Token);
        Assert.Equal(6, proxy.Connections);
    }

    [Fact]
    public async Task AMarketKnownToSendNoTickets_IsAnsweredAtOnce_WithoutAHandshake()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await OpenSslServer.StartAsync(_home.Pki, new TlsPeerOptions { Tickets = 0 });
        using var proxy = RecordTamperingProxy.Start(market.Port, (_, _, content) => content);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        // The first resume learns it: a full handshake, then the whole wait, and no ticket.
        var first = await Assert.ThrowsAsync<ControlErrorException>(() => connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Resume, cancellationToken: cts.Token));
        Assert.Equal(ErrorCode.NoTicket, first.Code);
        Assert.Equal(1, proxy.Connections);

        // From then on the terminal is told at once: no handshake, no wait (prefetch likewise).
        var second = await Assert.ThrowsAsync<ControlErrorException>(() => connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Resume, cancellationToken: cts.Token));
        Assert.Equal(ErrorCode.NoTicket, second.Code);
        var prefetch = await Assert.ThrowsAsync<ControlErrorException>(() => connector.PrefetchAsync("localhost", proxy.Port, cancellationToken: cts.Token));
        Assert.Equal(ErrorCode.NoTicket, prefetch.Code);
        Assert.Equal(1, proxy.Connections);
    }

    /// <summary>
    /// What a market is known for is known per server name: one address may serve names configured apart.
    /// A device naming the address under another name, at which no tickets come, does not get the market's
    /// own name refused at once to every device (before, profiles were kept by host and port alone).
    /// </summary>
    [Fact]
    public async Task AMarketKnownToSendNoTicketsUnderOneServerName_IsStillTriedUnderAnother()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        _home.Pki.WithServer(_home.Pki.IssueServer("two-names", "localhost", otherNames: ["other.localhost"]));
        using var market = await OpenSslServer.StartAsync(_home.Pki, new TlsPeerOptions { Tickets = 0 });
        using var proxy = RecordTamperingProxy.Start(market.Port, (_, _, content) => content);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var underOtherName = new DelegateRequest(new MarketAddress("localhost", proxy.Port, "other.localhost", null), DelegationMode.Resume);

        // Learned under the other name (a handshake, no ticket), then answered at once under it.
        for (var i = 0; i < 2; i++)
        {
            var refused = await Assert.ThrowsAsync<ControlErrorException>(() => control.RequestAsync(underOtherName, cts.Token));
            Assert.Equal(ErrorCode.NoTicket, refused.Code);
            Assert.Equal(1, proxy.Connections);
        }

        // The host's own name is not known yet: it gets a handshake of its own.
        var own = await Assert.ThrowsAsync<ControlErrorException>(() => new DelegatedConnector(control).ConnectAsync("localhost", proxy.Port, DelegationMode.Resume, cancellationToken: cts.Token));
        Assert.Equal(ErrorCode.NoTicket, own.Code);
        Assert.Equal(2, proxy.Connections);
        var profile = await _home.Server.Delegation.Profiles.FindAsync("localhost", proxy.Port, "other.localhost", null, cts.Token);
        Assert.True(profile is { NoTicketsConfirmed: true, ServerName: "other.localhost" }, $"the other name's profile: {profile}");
    }
}

/// <summary>
/// A resume that missed the cache: the terminal gets the market's first ticket the moment the home
/// server reads it, and the rest of the market's flight goes to the cache behind its back. The home
/// server here waits 30 s for each further ticket of a flight (the default is 50 ms), so a terminal held
/// until the flight ends would wait 30 s for a third ticket that nginx (OpenSSL, two a handshake) never
/// sends. nginx, not openssl s_server: s_server takes one connection at a time, and the home server's
/// is still open while the terminal resumes.
/// </summary>
[Collection("home card")]
public sealed class TicketHandOutTests : IAsyncLifetime
{
    private static readonly TimeSpan FlightWait = TimeSpan.FromSeconds(30);

    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start(o => o with { MarketTimeout = FlightWait, TicketFlightWait = FlightWait });
        return Task.CompletedTask;
    }

    // Disposal stops any wait for a third ticket still running (the tests' nginx, stopped first, usually ends it).
    public async Task DisposeAsync() => await _home.DisposeAsync();

    [Fact]
    public async Task AResumeThatMissedTheCache_GetsTheFirstTicketAtOnce_AndTheRestOfTheFlightGoesToTheCache()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);
        Assert.Equal(0, (await connector.PrefetchAsync("localhost", market.Port, minimum: 0, cancellationToken: cts.Token)).Ready);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var session = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, cancellationToken: cts.Token);
        var answered = clock.Elapsed;
        await using (session.Stream) Assert.True(session.Tls!.Resumed);

        // Half the flight wait: a terminal held until the flight ended would have waited all of it.
        Assert.True(answered < FlightWait / 2, $"the resume was answered after {answered.TotalSeconds:0.0} s, as if it waited for the market's whole flight");
        // The market's second ticket was read after the terminal had its first, and is in the cache.
        var ready = 0;
        for (var i = 0; i < 100 && ready == 0; i++)
        {
            await Task.Delay(100, cts.Token);
            ready = (await connector.PrefetchAsync("localhost", market.Port, minimum: 0, cancellationToken: cts.Token)).Ready;
        }
        Assert.Equal(1, ready);
        // And the reply's refill-ahead ran no handshake of its own while that flight was still being read.
        await Task.Delay(1000, cts.Token);
        Assert.Equal(1, (await connector.PrefetchAsync("localhost", market.Port, minimum: 0, cancellationToken: cts.Token)).Ready);
    }

    [Fact]
    public async Task ATicketOfTheFlightThatArrivesAfterTheDeviceLocked_IsWiped_NotCachedForItsNextSession()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        // The home server reaches nginx through a proxy that holds the market's second ticket back 2 s.
        var (proxy, seen) = TicketWaitTests.HoldingAfterFinished(market.Port, 2, TimeSpan.FromSeconds(2));
        using var _proxy = proxy;
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control) { TerminalRoute = (_, _) => ("127.0.0.1", market.Port) };

        var session = await connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Resume, cancellationToken: cts.Token);
        await using (session.Stream) Assert.True(session.Tls!.Resumed);
        // The device locks while the second ticket is still held back, then unlocks again.
        await new HomeControl(control).LockAsync(cts.Token);
        await Task.Delay(TimeSpan.FromSeconds(6), cts.Token);
        await new HomeControl(control).UnlockAsync(HomeFixture.Pin1, HomeFixture.Pin2, cts.Token);

        Assert.True(seen() >= 2, "the market's second ticket never came");
        Assert.Equal(0, (await connector.PrefetchAsync("localhost", proxy.Port, minimum: 0, cancellationToken: cts.Token)).Ready);
    }
}

/// <summary>
/// A handoff holds the terminal's reply while the market's first tickets are read for the cache, but
/// only when the cache would keep them. The wait here is 20 s (the default is 100 ms), so a reply held
/// for tickets shows in the time it takes.
/// </summary>
[Collection("home card")]
/// <summary>A market's flight of tickets, once learned, is not waited on for one ticket more.</summary>
public sealed class TicketFlightTests : IAsyncLifetime
{
    private static readonly TimeSpan FlightWait = TimeSpan.FromSeconds(5);

    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start(o => o with { MarketTimeout = TimeSpan.FromSeconds(8), TicketFlightWait = FlightWait });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _home.DisposeAsync();

    [Fact]
    public async Task AFetchFromAMarketWhoseFlightIsKnown_StopsAtItsLastTicket_WithoutWaitingForAnother()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        // OpenSSL sends two tickets, back to back.
        using var market = await OpenSslServer.StartAsync(_home.Pki);
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);

        // The first fetch waits the flight out (5 s here) for a third ticket that never comes, and learns the flight is two.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var first = await connector.PrefetchAsync("localhost", market.Port, minimum: 2, cancellationToken: cts.Token);
        var waited = clock.Elapsed;
        // The next stops at the second ticket.
        clock.Restart();
        var second = await connector.PrefetchAsync("localhost", market.Port, minimum: 4, cancellationToken: cts.Token);
        var learned = clock.Elapsed;

        Assert.Equal((2, 1), first);
        Assert.Equal((4, 1), second);
        Assert.True(waited >= FlightWait, $"the first fetch took {waited.TotalSeconds:F1} s: it did not wait its flight out");
        Assert.True(learned < FlightWait - TimeSpan.FromSeconds(1), $"the second fetch took {learned.TotalSeconds:F1} s: it waited for a ticket the market does not send");
    }
}

public sealed class HandoffTicketWaitTests : IAsyncLifetime
{
    private static readonly TimeSpan TicketWait = TimeSpan.FromSeconds(20);

    private HomeFixture _home = null!;

    public Task InitializeAsync()
    {
        _home = HomeFixture.Start(o => o with { MarketTimeout = TimeSpan.FromSeconds(3), HandoffTicketWait = TicketWait });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _home.DisposeAsync();

    [Fact]
    public async Task AHandoffToAMarketKnownToSendNoTickets_IsNotHeldForThem()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await OpenSslServer.StartAsync(_home.Pki, new TlsPeerOptions { Tickets = 0 });
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);
        // A resume's full wait learns that the market sends none.
        var learned = await Assert.ThrowsAsync<ControlErrorException>(() => connector.ConnectAsync("localhost", market.Port, DelegationMode.Resume, cancellationToken: cts.Token));
        Assert.Equal(ErrorCode.NoTicket, learned.Code);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var session = await connector.ConnectAsync("localhost", market.Port, DelegationMode.Handoff, cancellationToken: cts.Token);
        var answered = clock.Elapsed;
        await using var _ = session.Stream;

        Assert.Equal(DelegationMode.Handoff, session.Mode);
        Assert.True(answered < TicketWait / 2, $"the handoff was answered after {answered.TotalSeconds:0.0} s, as if it waited for tickets the market is known not to send");
    }

    [Fact]
    public async Task AHandoffWhileTheDevicesCacheForTheMarketIsFull_IsNotHeldForItsTickets()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var market = await NginxServer.StartAsync(_home.Pki, _home.Dir.Path);
        var armed = false;
        // Once armed, the market's first record after the client's last flight (its first ticket) is held back for the whole wait.
        var (proxy, seen) = TicketWaitTests.HoldingAfterFinished(market.Port, 1, TicketWait, () => Volatile.Read(ref armed));
        using var _proxy = proxy;
        await using var control = await _home.UnlockedTerminalAsync(cts.Token);
        var connector = new DelegatedConnector(control);
        var full = Daiko.Home.Delegation.SessionCache<Daiko.Tls.SessionTicket>.MaxEntriesPerKey;
        // Filled by prefetching (at most 8 asked at a time) and then handoffs (each keeps what it reads of nginx's two-ticket flight).
        var ready = (await connector.PrefetchAsync("localhost", proxy.Port, minimum: 8, cancellationToken: cts.Token)).Ready;
        for (var i = 0; i < full && ready < full; i++)
        {
            await using ((await connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Handoff, cancellationToken: cts.Token)).Stream) { }
            ready = (await connector.PrefetchAsync("localhost", proxy.Port, minimum: 0, cancellationToken: cts.Token)).Ready;
        }
        Assert.Equal(full, ready);
        // Armed once the handoffs before have ended: a late record of theirs must not count as this handshake's.
        for (var i = 0; i < 200 && proxy.Open > 0; i++) await Task.Delay(50, cts.Token);
        Assert.Equal(0, proxy.Open);

        Volatile.Write(ref armed, true);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var session = await connector.ConnectAsync("localhost", proxy.Port, DelegationMode.Handoff, cancellationToken: cts.Token);
        var answered = clock.Elapsed;
        await using var _ = session.Stream;

        Assert.Equal(DelegationMode.Handoff, session.Mode);
        Assert.True(answered < TicketWait / 2, $"the handoff was answered after {answered.TotalSeconds:0.0} s, as if it waited for tickets a full cache would not keep");
        // The market did send its tickets (the first is held back from the moment the proxy has it).
        for (var i = 0; i < 100 && seen() == 0; i++) await Task.Delay(50, cts.Token);
        Assert.True(seen() >= 1, "the market sent nothing after the client's last flight");
    }
}
