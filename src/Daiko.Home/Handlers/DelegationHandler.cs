using Daiko.Home.Authority;
using Daiko.Home.Delegation;
using Daiko.Home.Devices;
using Daiko.Home.Policy;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Handlers;

/// <summary>
/// delegate and prefetch (F3-F7). The home server picks the mode for <c>auto</c> from what it learned
/// about the market (<see cref="MarketProfiles.Choose"/>), so the terminal asks once and gets the
/// reply of the chosen mode: a ticket, live secrets with a relay, a relay, or the user's chain. The
/// device's policy decides which markets and modes it may use and which tickets it may hold
/// (<see cref="DevicePolicies"/>); a refusal is audited with the rule that refused it.
/// </summary>
public sealed class DelegationHandler(CardGate gate, DelegationService delegation, DeviceRegistry devices, Splicer splicer, DevicePolicies policies, DeviceAuthority authority, AssistGrants grants)
{
    private long _nextRelay;

    public Task<HandlerResult> PrefetchAsync(PrefetchRequest request, RequestContext context) =>
        ForResumeAsync("prefetch", request.Market, context, async (_, market) =>
        {
            var (ready, handshakes) = await delegation.PrefetchAsync(context.DeviceId, market, request.Minimum, context.Closed);
            if (handshakes > 0) await devices.AuditAsync(context.DeviceId, "prefetch", Where(market), "resume", $"{ready} ticket(s) ready");
            return new PrefetchedReply(ready, handshakes);
        });

    /// <summary>
    /// stock: hands the terminal agent up to the asked number of tickets for its local stock (each
    /// audited as handed over), running full handshakes now where the cache holds too few, then
    /// refilling the cache in the background. A device that already holds its policy's ticket count
    /// for the market is refused, as a resume would be.
    /// </summary>
    public Task<HandlerResult> StockAsync(StockRequest request, RequestContext context) =>
        ForResumeAsync("stock", request.Market, context, async (policy, market) =>
        {
            var wanted = Math.Min(request.Count, await policies.Tickets.RoomForAsync(context.DeviceId, market.Holding, policy.MaxTickets, context.Closed));
            // A refill after the reply is for the device as it is now: not if it locks meanwhile.
            var purges = delegation.PurgesOf(context.DeviceId);
            var (_, handshakes) = await delegation.PrefetchAsync(context.DeviceId, market, wanted, context.Closed);
            var tickets = new List<Daiko.Tls.SessionTicket>();
            await policies.StockedAsync(context.DeviceId, policy.TicketTerms, context.Closed);
            var pskKe = await delegation.PskKeHintAsync(market, context.Closed);
            // Each ticket's place, counted as it is taken (one write, as a resume's hit): given back, with every ticket
            // wiped, if they never reach the device.
            var places = new List<ITicketPlace>();
            try
            {
                while (tickets.Count < wanted && delegation.TryTakeCached(context.DeviceId, market, policy.TicketLifetimeOrLongest) is { } ticket)
                {
                    try
                    {
                        places.Add(await ReserveHandedOrGiveBackAsync(ticket, market, policy, purges, context));
                    }
                    catch (PolicyRefusedException) when (tickets.Count > 0)
                    {
                        // A concurrent request took the last room: this one hands over what it has (the ticket went back).
                        break;
                    }
                    tickets.Add(DelegationService.Hinted(ticket, pskKe));
                }
                await AuditOrWipeAsync(tickets, context.DeviceId, "stock", Where(market), "resume", $"{tickets.Count} ticket(s) handed over");
            }
            catch
            {
                await NotDeliveredAsync(tickets, places);
                throw;
            }
            return new HandlerResult(new StockedReply(tickets, handshakes), () =>
            {
                WipeAll(tickets);
                delegation.RefillAhead(context.DeviceId, market, purges);
            }, () => _ = NotDeliveredAsync(tickets, places), () => WipeAll(tickets));
        });

    public async Task<HandlerResult> DelegateAsync(DelegateRequest request, RequestContext context)
    {
        if (gate.RefusalUnlessReady() is { } refusal) return refusal;
        var (policy, market) = await ScopeAsync(request.Market, context);
        var mode = request.Mode;
        try
        {
            market.Reach.CheckName(market.Host, market.Port, market.ServerName);
            // A forbidden mode is refused, never served in another one; auto chooses among the allowed modes.
            var candidates = ModeChoice.Candidates(request.Mode, request.Mode == DelegationMode.Auto
                ? await delegation.Profiles.FindAsync(market, context.Closed) : null, policy.Modes);
            // The market refused a ticket this device was handed: the others held for it go before anything is
            // served, and stay gone if the request is then refused (said in the session's audit line, not one of its own).
            var stale = request.Fresh ? delegation.DropTickets(context.DeviceId, market) : 0;
            gate.Card.Touch();
            for (var i = 0; ; i++)
            {
                mode = candidates[i];
                try
                {
                    return await DelegateInAsync(mode, market, policy, context, request.Mode == DelegationMode.Auto, (request.Fresh, stale));
                }
                catch (Exception e) when (i + 1 < candidates.Count && ModeChoice.TryNext(e))
                {
                    // Auto met a market (or a ticket budget) this mode cannot serve: the next allowed mode instead.
                    await devices.AuditAsync(context.DeviceId, "delegate", Where(market), mode.ToWire(), $"{(e as PolicyRefusedException)?.AuditOutcome ?? "no ticket"}: {candidates[i + 1].ToWire()} instead");
                }
            }
        }
        catch (PolicyRefusedException e)
        {
            return await RefuseAsync(e, "delegate", market, mode, context);
        }
        catch (DelegationException e)
        {
            return await FailedAsync(e, "delegate", market, mode, context, ErrorCode.HandshakeFailed);
        }
        catch (Daiko.Cards.CardNotReadyException e)
        {
            return HandlerResult.Error(ErrorCode.CardNotReady, e.Message);
        }
    }

    /// <summary>
    /// What prefetch and stock share: the card ready, the device's policy read, the market within its
    /// reach and resume among its modes; then <paramref name="work"/>, with refusals and failures
    /// audited under <paramref name="action"/> and answered as error codes.
    /// </summary>
    private async Task<HandlerResult> ForResumeAsync(string action, MarketAddress address, RequestContext context, Func<DevicePolicy, MarketRequest, Task<HandlerResult>> work)
    {
        if (gate.RefusalUnlessReady() is { } refusal) return refusal;
        var (policy, market) = await ScopeAsync(address, context);
        try
        {
            // Prefetch and the stock are resume by another name: the same markets, mode, ticket count and lifetime rules.
            ModeChoice.Candidates(DelegationMode.Resume, null, policy.Modes);
            market.Reach.CheckName(market.Host, market.Port, market.ServerName);
            gate.Card.Touch();
            return await work(policy, market);
        }
        catch (PolicyRefusedException e)
        {
            return await RefuseAsync(e, action, market, DelegationMode.Resume, context);
        }
        catch (DelegationException e)
        {
            return await FailedAsync(e, action, market, DelegationMode.Resume, context, ErrorCode.MarketFailed);
        }
    }

    /// <summary>The device's policy, and the market as that policy lets the home server reach it.</summary>
    private async Task<(DevicePolicy Policy, MarketRequest Market)> ScopeAsync(MarketAddress address, RequestContext context)
    {
        var (policy, _) = await policies.ForDeviceAsync(context.DeviceId, context.Closed);
        return (policy, ToMarket(address) with { Reach = policies.ReachFor(policy) });
    }

    /// <summary>A delegation that failed at the market: audited, and answered with the failure's code (<paramref name="otherwise"/> for a failed handshake).</summary>
    private async Task<HandlerResult> FailedAsync(DelegationException e, string action, MarketRequest market, DelegationMode mode, RequestContext context, ErrorCode otherwise)
    {
        await devices.AuditAsync(context.DeviceId, action, Where(market), mode.ToWire(), $"failed: {e.Failure}");
        return HandlerResult.Error(e.Failure switch
        {
            DelegationFailure.MarketUnreachable => ErrorCode.MarketUnreachable,
            DelegationFailure.MarketCertificateRejected => ErrorCode.MarketCertificate,
            DelegationFailure.NoTicketIssued => ErrorCode.NoTicket,
            DelegationFailure.CardNotReady => ErrorCode.CardNotReady,
            DelegationFailure.Busy => ErrorCode.Unavailable,
            _ => otherwise,
        }, e.Message);
    }

    private async Task<HandlerResult> RefuseAsync(PolicyRefusedException e, string action, MarketRequest market, DelegationMode mode, RequestContext context)
    {
        await devices.AuditAsync(context.DeviceId, action, Where(market), mode.ToWire(), e.AuditOutcome);
        return HandlerResult.Error(ErrorCode.PolicyRefused, await policies.ReplyAsync(e, context.DeviceId, context.Closed));
    }

    /// <summary>Counts a ticket taken from the cache as handed over; when it cannot be (the device at its max, the store out of reach), it goes back to the cache.</summary>
    private async Task<ITicketPlace> ReserveHandedOrGiveBackAsync(Daiko.Tls.SessionTicket cached, MarketRequest market, DevicePolicy policy, long purges, RequestContext context)
    {
        try
        {
            var held = await policies.Tickets.ReserveHandedAsync(context.DeviceId, market.Holding, policy.MaxTickets, cached.ExpiresAt, context.Closed);
            Hosting.HomeMetrics.CacheLookup(hit: true);
            return held;
        }
        catch
        {
            delegation.GiveBackCached(context.DeviceId, market, cached, purges);
            throw;
        }
    }

    /// <param name="refused">
    /// the market refused a ticket this device was handed (<see cref="DelegateRequest.Fresh"/>): a resume is
    /// served from a new handshake, and the tickets dropped before (<c>Stale</c>) are said in the audit line.
    /// </param>
    private async Task<HandlerResult> DelegateInAsync(DelegationMode mode, MarketRequest market, DevicePolicy policy, RequestContext context, bool auto, (bool Fresh, int Stale) refused)
    {
        var where = Where(market);
        var audit = mode.ToWire();
        string Said(string outcome) => refused.Stale > 0 ? $"{outcome} ({refused.Stale} stale ticket(s) dropped: the market refused one)" : outcome;
        switch (mode)
        {
            case DelegationMode.Resume:
            {
                var purges = delegation.PurgesOf(context.DeviceId);
                // A ticket already in the cache is counted with its own expiry in one write (on PostgreSQL one round trip,
                // not two); on a miss a place is reserved before the handshake, and recorded once its ticket came.
                var cached = refused.Fresh ? null : await delegation.TakeCachedAsync(context.DeviceId, market, policy.TicketLifetimeOrLongest, context.Closed);
                await using var held = cached is null
                    ? await policies.Tickets.ReserveAsync(context.DeviceId, market.Holding, policy.MaxTickets, context.Closed)
                    : await ReserveHandedOrGiveBackAsync(cached, market, policy, purges, context);
                var ticket = cached ?? await delegation.ObtainTicketAsync(context.DeviceId, market, context.Closed, policy.TicketLifetimeOrLongest, refused.Fresh);
                try
                {
                    if (cached is null) await held.HandedAsync(ticket.ExpiresAt, context.Closed);
                    await AuditOrWipeAsync([ticket], context.DeviceId, "delegate", where, audit, Said("ticket handed over"));
                }
                catch
                {
                    // Not counted, or not audited: not handed over.
                    await NotDeliveredAsync([ticket], [held]);
                    throw;
                }
                // The reply is encoded before AfterReply runs: only then is the ticket's PSK wiped.
                return new HandlerResult(new TicketReply(ticket), () =>
                {
                    ticket.Wipe();
                    delegation.RefillAhead(context.DeviceId, market, purges);
                }, () => _ = NotDeliveredAsync([ticket], [held]), ticket.Wipe);
            }
            case DelegationMode.Handoff:
            {
                // The device's work as it is before the market is dialled: a session end or a policy change that ends it
                // while this request runs ends the splice too, however late the splice starts (it starts after the reply).
                var work = authority.Work(context.DeviceId);
                // A handed-over or relayed session holds a market connection for as long as it runs: the device's place is taken first.
                var place = splicer.Reserve(context.DeviceId);
                Daiko.Tls.TlsConnection? connection = null;
                RelayStream? relay = null;
                try
                {
                    connection = await delegation.ConnectAsUserAsync(context.DeviceId, market, null, context.Closed);
                    // The device may go away during the wait, or the store fail: then the market's connection goes too (below).
                    await delegation.AbsorbTicketsAsync(context.DeviceId, market, connection, context.Closed);
                    // What the cache did not take stays nobody's: a handed-over or relayed session's later tickets are wiped as they come.
                    connection.ForgoTickets();
                    if (connection.Version != Daiko.Tls.TlsVersions.Tls13 && auto && policy.Modes.Contains(DelegationMode.Relay))
                    {
                        // Auto met a TLS 1.2 market it did not know: the session it has is relayed, not tried again.
                        relay = context.Connection.OpenRelay(Interlocked.Increment(ref _nextRelay));
                        await devices.AuditAsync(context.DeviceId, "delegate", where, "relay", "relay opened (TLS 1.2 market)");
                        var (relayed, session) = (relay, connection);
                        return new HandlerResult(new RelayReply(relayed.Id), () => splicer.Start(relayed, session, work, place),
                            Abandon(place, relayed, session));
                    }
                    var transport = connection.Transport;
                    // No resumption secret goes with the session: tickets the market sends on the handed-over
                    // connection yield the device nothing, so a handoff adds no ticket to those the home server
                    // handed it (each counted against its policy: max-tickets, ticket-lifetime).
                    var exported = connection.Export().WithoutResumption();
                    relay = context.Connection.OpenRelay(Interlocked.Increment(ref _nextRelay));
                    await devices.AuditAsync(context.DeviceId, "delegate", where, audit, Said("secrets handed over"));
                    var handed = relay;
                    var abandon = Abandon(place, handed, transport);
                    return new HandlerResult(new SecretsReply(exported, handed.Id), () =>
                    {
                        exported.Wipe();
                        splicer.Start(handed, transport, work, place);
                    }, () =>
                    {
                        exported.Wipe();
                        abandon();
                    });
                }
                catch
                {
                    await LetGoAsync(place, relay, connection);
                    throw;
                }
            }
            case DelegationMode.Relay:
            {
                var work = authority.Work(context.DeviceId);
                var place = splicer.Reserve(context.DeviceId);
                Daiko.Tls.TlsConnection? connection = null;
                RelayStream? relay = null;
                try
                {
                    connection = await delegation.ConnectAsUserAsync(context.DeviceId, market, null, context.Closed);
                    // Nothing takes a relayed session's tickets (the cache is filled by handshakes of its own).
                    connection.ForgoTickets();
                    relay = context.Connection.OpenRelay(Interlocked.Increment(ref _nextRelay));
                    await devices.AuditAsync(context.DeviceId, "delegate", where, audit, Said("relay opened"));
                    var (opened, session) = (relay, connection);
                    return new HandlerResult(new RelayReply(opened.Id), () => splicer.Start(opened, session, work, place),
                        Abandon(place, opened, session));
                }
                catch
                {
                    await LetGoAsync(place, relay, connection);
                    throw;
                }
            }
            case DelegationMode.Assist:
                // The terminal dials the market itself, but acts there as the owner: the same markets rule. What the card's
                // signature vouches for is the server name (the market's certificate must name it), wherever the terminal
                // dials: so a server name of its own is judged at its own addresses too, and a device cannot carry the
                // owner's signature to a service inside the home network by naming it at a public address.
                try
                {
                    await market.Reach.ResolveAsync(market.Host, market.Port, market.ServerName, context.Closed);
                    if (market.ServerName is { } name && name != market.Host) await market.Reach.CheckOwnAddressesAsync(name, market.Port, context.Closed);
                }
                catch (System.Net.Sockets.SocketException e)
                {
                    throw new DelegationException(DelegationFailure.MarketUnreachable, $"{where} cannot be resolved from the home server: {e.SocketErrorCode}");
                }
                // One signature for this market, once its chain is verified here, within 30 s.
                grants.Approve(context.DeviceId, where, market.EffectiveServerName);
                await devices.AuditAsync(context.DeviceId, "delegate", where, audit, Said("assist ready"));
                return new AssistReply(gate.Card.CertificateChain.ToList());
            default:
                return HandlerResult.Error(ErrorCode.BadMode, $"unknown delegation mode '{mode.ToWire()}'");
        }
    }

    /// <summary>Wipes the tickets' secrets (after their reply, or with it failed; alone, when its write began: their places are kept, the device may hold them).</summary>
    private static void WipeAll(IEnumerable<Daiko.Tls.SessionTicket> tickets)
    {
        foreach (var t in tickets) t.Wipe();
    }

    /// <summary>
    /// Tickets counted for the device that never reached it (the request failed after them, or its reply could not be
    /// sent): wiped, and their places given back (best effort: a place that cannot be given back counts until its expiry).
    /// </summary>
    private static async Task NotDeliveredAsync(IEnumerable<Daiko.Tls.SessionTicket> tickets, IEnumerable<ITicketPlace> places)
    {
        WipeAll(tickets);
        foreach (var place in places) await place.GiveBackAsync();
    }

    /// <summary>Audits tickets taken from the cache for a device; if the audit fails they are wiped, never left unreferenced.</summary>
    private async Task AuditOrWipeAsync(IReadOnlyList<Daiko.Tls.SessionTicket> tickets, string deviceId, string action, string market, string mode, string outcome)
    {
        try
        {
            await devices.AuditAsync(deviceId, action, market, mode, outcome);
        }
        catch
        {
            foreach (var t in tickets) t.Wipe();
            throw;
        }
    }

    /// <summary>A relay or handoff that failed before its reply, or whose reply could not be sent: the device's place, the relay and the market's connection, all let go.</summary>
    private static async Task LetGoAsync(Splicer.Place place, RelayStream? relay, IAsyncDisposable? market)
    {
        place.Dispose();
        if (relay is not null) await relay.DisposeAsync();
        if (market is not null) await market.DisposeAsync();
    }

    /// <summary>What a reply that could not be sent leaves (<see cref="LetGoAsync"/>, not awaited: the dispatcher is failing already).</summary>
    private static Action Abandon(Splicer.Place place, RelayStream relay, IAsyncDisposable market) => () => _ = LetGoAsync(place, relay, market);

    private static MarketRequest ToMarket(MarketAddress address) => MarketRequest.Canonical(address.Host, address.Port, address.Sni, address.Alpn);

    private static string Where(MarketRequest market) => market.Where;
}
