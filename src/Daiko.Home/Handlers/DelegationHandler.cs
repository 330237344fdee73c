using Daiko.Home.Delegation;
using Daiko.Home.Devices;
using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Handlers;

/// <summary>
/// delegate and prefetch (F3-F7). The home server picks the mode for <c>auto</c> from what it learned
/// about the market (<see cref="MarketProfiles.Choose"/>), so the terminal asks once and gets the
/// reply of the chosen mode: a ticket, live secrets with a relay, a relay, or the user's chain.
/// </summary>
public sealed class DelegationHandler(CardGate gate, DelegationService delegation, DeviceRegistry devices, Splicer splicer)
{
    private long _nextRelay;

    public async Task<HandlerResult> PrefetchAsync(PrefetchRequest request, RequestContext context)
    {
        if (gate.RefusalUnlessReady() is { } refusal) return refusal;
        var market = ToMarket(request.Market);
        try
        {
            gate.Card.Touch();
            var (ready, handshakes) = await delegation.PrefetchAsync(context.DeviceId, market, request.Minimum, context.Closed);
            if (handshakes > 0) await devices.AuditAsync(context.DeviceId, "prefetch", Where(market), "resume", $"{ready} ticket(s) ready");
            return new PrefetchedReply(ready, handshakes);
        }
        catch (DelegationException e)
        {
            await devices.AuditAsync(context.DeviceId, "prefetch", Where(market), "resume", "failed: " + e.Failure);
            return HandlerResult.Error(e.Failure == DelegationFailure.NoTicketIssued ? ErrorCode.NoTicket : ErrorCode.MarketFailed, e.Message);
        }
    }

    /// <summary>
    /// stock: hands the terminal agent up to the asked number of tickets for its local stock (each
    /// audited as handed over), running full handshakes now where the cache holds too few, then
    /// refilling the cache in the background.
    /// </summary>
    public async Task<HandlerResult> StockAsync(StockRequest request, RequestContext context)
    {
        if (gate.RefusalUnlessReady() is { } refusal) return refusal;
        var market = ToMarket(request.Market);
        try
        {
            gate.Card.Touch();
            var (_, handshakes) = await delegation.PrefetchAsync(context.DeviceId, market, request.Count, context.Closed);
            var tickets = new List<Daiko.Tls.SessionTicket>();
            var key = market.KeyFor(context.DeviceId);
            while (tickets.Count < request.Count && delegation.Tickets.TryTake(key) is { } ticket) tickets.Add(ticket);
            await devices.AuditAsync(context.DeviceId, "stock", Where(market), "resume", $"{tickets.Count} ticket(s) handed over");
            return new HandlerResult(new StockedReply(tickets, handshakes), () =>
            {
                foreach (var t in tickets) t.Wipe();
                delegation.RefillAhead(context.DeviceId, market);
            });
        }
        catch (DelegationException e)
        {
            await devices.AuditAsync(context.DeviceId, "stock", Where(market), "resume", "failed: " + e.Failure);
            return HandlerResult.Error(e.Failure == DelegationFailure.NoTicketIssued ? ErrorCode.NoTicket : ErrorCode.MarketFailed, e.Message);
        }
    }

    public async Task<HandlerResult> DelegateAsync(DelegateRequest request, RequestContext context)
    {
        if (gate.RefusalUnlessReady() is { } refusal) return refusal;
        var market = ToMarket(request.Market);
        var mode = request.Mode == DelegationMode.Auto
            ? MarketProfiles.Choose(await delegation.Profiles.FindAsync(market.Host, market.Port, context.Closed))
            : request.Mode;
        try
        {
            gate.Card.Touch();
            try
            {
                return await DelegateInAsync(mode, market, context, request.Mode == DelegationMode.Auto);
            }
            catch (DelegationException e) when (request.Mode == DelegationMode.Auto && mode == DelegationMode.Resume && e.Failure == DelegationFailure.NoTicketIssued)
            {
                // Auto met a market that issues no tickets (now remembered): hand the session off instead.
                await devices.AuditAsync(context.DeviceId, "delegate", Where(market), "resume", "no ticket: handoff instead");
                mode = DelegationMode.Handoff;
                return await DelegateInAsync(mode, market, context, auto: true);
            }
        }
        catch (DelegationException e)
        {
            await devices.AuditAsync(context.DeviceId, "delegate", Where(market), mode.ToWire(), $"failed: {e.Failure}");
            return HandlerResult.Error(e.Failure switch
            {
                DelegationFailure.MarketUnreachable => ErrorCode.MarketUnreachable,
                DelegationFailure.MarketCertificateRejected => ErrorCode.MarketCertificate,
                DelegationFailure.NoTicketIssued => ErrorCode.NoTicket,
                DelegationFailure.CardNotReady => ErrorCode.CardNotReady,
                _ => ErrorCode.HandshakeFailed,
            }, e.Message);
        }
        catch (Daiko.Cards.CardNotReadyException e)
        {
            return HandlerResult.Error(ErrorCode.CardNotReady, e.Message);
        }
    }

    private async Task<HandlerResult> DelegateInAsync(DelegationMode mode, MarketRequest market, RequestContext context, bool auto)
    {
        var where = Where(market);
        var audit = mode.ToWire();
        switch (mode)
        {
            case DelegationMode.Resume:
            {
                var ticket = await delegation.ObtainTicketAsync(context.DeviceId, market, context.Closed);
                await devices.AuditAsync(context.DeviceId, "delegate", where, audit, "ticket handed over");
                // The reply is encoded before AfterReply runs: only then is the ticket's PSK wiped.
                return new HandlerResult(new TicketReply(ticket), () =>
                {
                    ticket.Wipe();
                    delegation.RefillAhead(context.DeviceId, market);
                });
            }
            case DelegationMode.Handoff:
            {
                var connection = await delegation.ConnectAsUserAsync(market, null, context.Closed);
                await delegation.AbsorbTicketsAsync(context.DeviceId, market, connection, context.Closed);
                if (connection.Version != Daiko.Tls.TlsVersions.Tls13 && auto)
                {
                    // Auto met a TLS 1.2 market it did not know: the session it has is relayed, not tried again.
                    var relayed = context.Connection.OpenRelay(Interlocked.Increment(ref _nextRelay));
                    await devices.AuditAsync(context.DeviceId, "delegate", where, "relay", "relay opened (TLS 1.2 market)");
                    return new HandlerResult(new RelayReply(relayed.Id), () => splicer.Start(relayed, connection));
                }
                var transport = connection.Transport;
                var exported = connection.Export();
                var relay = context.Connection.OpenRelay(Interlocked.Increment(ref _nextRelay));
                await devices.AuditAsync(context.DeviceId, "delegate", where, audit, "secrets handed over");
                return new HandlerResult(new SecretsReply(exported, relay.Id), () =>
                {
                    exported.Wipe();
                    splicer.Start(relay, transport);
                });
            }
            case DelegationMode.Relay:
            {
                var connection = await delegation.ConnectAsUserAsync(market, null, context.Closed);
                var relay = context.Connection.OpenRelay(Interlocked.Increment(ref _nextRelay));
                await devices.AuditAsync(context.DeviceId, "delegate", where, audit, "relay opened");
                return new HandlerResult(new RelayReply(relay.Id), () => splicer.Start(relay, connection));
            }
            case DelegationMode.Assist:
                await devices.AuditAsync(context.DeviceId, "delegate", where, audit, "assist ready");
                return new AssistReply(gate.Card.CertificateChain.ToList());
            default:
                return HandlerResult.Error(ErrorCode.BadMode, $"unknown delegation mode '{mode.ToWire()}'");
        }
    }

    private static MarketRequest ToMarket(MarketAddress address) => new(address.Host, address.Port, address.Sni, address.Alpn);

    private static string Where(MarketRequest market) => $"{market.Host}:{market.Port}";
}
