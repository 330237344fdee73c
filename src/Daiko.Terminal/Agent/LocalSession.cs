using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Tls;

namespace Daiko.Terminal.Agent;

/// <summary>
/// One local client of the agent (a CLI command): its requests go to the home server over the agent's
/// one channel under the channel's own ids, and their replies come back under the client's ids; relays
/// are spliced between the two. A resume request the local stock can answer is answered here, without
/// a byte to the home server. Everything this client costs on the channel (the channel's opening
/// included, when its request had to open it) is charged to <see cref="Meter"/>, which the client reads
/// with a <c>cost</c> request.
/// </summary>
internal sealed class LocalSession(HomeChannel channel, TicketStock stock)
{
    private readonly TaskSet _splices = new();
    private readonly List<MarketAddress> _taken = new();

    public TlsCounters Meter { get; } = new();

    public Task Splices => _splices.WhenAll();

    /// <summary>
    /// This client locked the home card: the agent ends once the client is gone (not before, so that
    /// the client can still ask what the lock cost).
    /// </summary>
    public bool Locked { get; private set; }

    /// <summary>The client is gone: the stock is refilled for every market it took a ticket for.</summary>
    public void Ended()
    {
        lock (_taken)
        {
            if (!Locked) foreach (var market in _taken.Distinct()) stock.RefillInBackground(market);
            _taken.Clear();
        }
    }

    public async Task HandleAsync(ControlRequest request, ControlConnection local)
    {
        var cancellationToken = local.Closed;
        switch (request.Message)
        {
            case CostRequest:
                await local.ReplyAsync(request, new CostReply(Meter.BytesSent, Meter.BytesReceived, Meter.RoundTrips, Meter.PublicKeyOperations));
                return;
            case DelegateRequest { Fresh: true } fresh when stock.Drop(fresh.Market) > 0:
                // The market refused a ticket: the stock's others for it are as stale. The request goes on
                // to the home server (which drops its own), and the stock is filled again when the client ends.
                lock (_taken) _taken.Add(fresh.Market);
                break;
            case DelegateRequest { Mode: DelegationMode.Resume or DelegationMode.Auto, Fresh: false } delegation when stock.TryTake(delegation.Market) is { } ticket:
                lock (_taken) _taken.Add(delegation.Market);
                try
                {
                    await local.ReplyAsync(request, new TicketReply(ticket));
                }
                finally
                {
                    ticket.Wipe();
                }
                return;
            case PrefetchRequest prefetch:
                await local.ReplyAsync(request, await PrefetchAsync(prefetch, cancellationToken));
                return;
        }
        ControlMessage reply;
        try
        {
            reply = await channel.ExchangeAsync(request.Message, Meter, cancellationToken);
        }
        catch (ControlErrorException e)
        {
            await local.ReplyAsync(request, new ErrorReply(e.Code, e.Message, e.TriesLeft));
            return;
        }
        switch (reply)
        {
            case SecretsReply secrets:
                Splice(secrets.Relay, local);
                try { await local.ReplyAsync(request, reply); }
                finally { secrets.Session.Wipe(); }
                return;
            case RelayReply relay:
                Splice(relay.Relay, local);
                break;
            case LockedReply:
                stock.Drop();
                Locked = true;
                break;
        }
        await local.ReplyAsync(request, reply);
    }

    /// <summary>Fills the local stock (count 0 only reports it).</summary>
    private async Task<ControlMessage> PrefetchAsync(PrefetchRequest prefetch, CancellationToken cancellationToken)
    {
        try
        {
            var (ready, handshakes) = prefetch.Minimum == 0 ? (stock.Count(prefetch.Market), 0) : await stock.FillAsync(prefetch.Market, prefetch.Minimum, Meter, cancellationToken);
            return new PrefetchedReply(ready, handshakes);
        }
        catch (ControlErrorException e)
        {
            return new ErrorReply(e.Code, e.Message, e.TriesLeft);
        }
    }

    /// <summary>Joins the home server's relay and the local client's under the same id, both ways.</summary>
    private void Splice(long relayId, ControlConnection local)
    {
        var home = channel.Current ?? throw new ControlErrorException(ErrorCode.Unavailable, "the control channel was lost");
        var far = home.OpenRelay(relayId, Meter);
        var near = local.OpenRelay(relayId);
        _splices.Track(PumpAsync(far, near));
        _splices.Track(PumpAsync(near, far));
    }

    private static async Task PumpAsync(RelayStream from, RelayStream to)
    {
        var buffer = new byte[ControlProtocol.MaxRelayChunk];
        try
        {
            int n;
            while ((n = await from.ReadAsync(buffer)) > 0) await to.WriteAsync(buffer.AsMemory(0, n));
            await to.DisposeAsync();
        }
        catch (IOException)
        {
            // A cut stream is passed on as cut: the reader must not take it for complete.
            await to.AbortAsync();
        }
    }
}
