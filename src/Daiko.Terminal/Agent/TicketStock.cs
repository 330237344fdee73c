using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Tls;

namespace Daiko.Terminal.Agent;

/// <summary>
/// The agent's local stock of market tickets: fetched from the home server ahead of need over the open
/// channel, kept in this process's memory only (never on disk), each handed out once, refilled in the
/// background after use, bounded per market, and dropped at once when the home server says so (lock,
/// revocation, policy change) or the agent ends.
/// </summary>
internal sealed class TicketStock(HomeChannel channel, TimeProvider time, int perMarket = StockRequest.DefaultPerMarket)
{
    private readonly Dictionary<MarketAddress, Queue<SessionTicket>> _tickets = new();
    private readonly Dictionary<MarketAddress, int> _wanted = new();
    private readonly HashSet<MarketAddress> _refilling = new();
    private readonly TaskSet _background = new();
    private readonly Dictionary<MarketAddress, long> _dropped = new();
    private long _generation;

    /// <summary>What background refills cost on the control channel (no command waits for them).</summary>
    public TlsCounters Background { get; } = new();

    public int Count(MarketAddress market)
    {
        lock (_tickets) return _tickets.TryGetValue(market, out var queue) ? queue.Count : 0;
    }

    /// <summary>
    /// A stocked ticket for <paramref name="market"/> (removed from the stock), or null. The caller
    /// starts the refill (<see cref="RefillInBackground"/>) once the session the ticket was for no longer
    /// waits: nothing goes to the home server before the terminal has connected to the market.
    /// </summary>
    public SessionTicket? TryTake(MarketAddress market)
    {
        SessionTicket? taken = null;
        lock (_tickets)
        {
            if (_tickets.TryGetValue(market, out var queue))
            {
                var now = time.GetUtcNow();
                while (queue.TryDequeue(out var ticket))
                {
                    if (!ticket.IsExpired(now)) { taken = ticket; break; }
                    ticket.Wipe();
                }
            }
        }
        return taken;
    }

    /// <summary>Asks the home server for tickets until <paramref name="wanted"/> are stocked (at most the bound); returns the stock and the home server's handshakes.</summary>
    public async Task<(int Ready, int Handshakes)> FillAsync(MarketAddress market, int wanted, TlsCounters meter, CancellationToken cancellationToken)
    {
        wanted = Math.Min(wanted, perMarket);
        lock (_tickets) _wanted[market] = Math.Max(wanted, _wanted.GetValueOrDefault(market));
        long generation, dropped;
        lock (_tickets) (generation, dropped) = (_generation, _dropped.GetValueOrDefault(market));
        var missing = wanted - Count(market);
        if (missing <= 0) return (Count(market), 0);
        var reply = await channel.ExchangeAsync(new StockRequest(market, missing), meter, cancellationToken);
        if (reply is ErrorReply error) throw error.ToException();
        if (reply is not StockedReply stocked) throw new ControlErrorException(ErrorCode.BadRequest, $"the home server answered 'stock' with '{reply.Type}'");
        lock (_tickets)
        {
            // A drop (of the whole stock, or of this market's) that came while the tickets were on their way wins: they are not kept.
            if (_generation != generation || _dropped.GetValueOrDefault(market) != dropped)
            {
                foreach (var t in stocked.Tickets) t.Wipe();
                return (0, stocked.Handshakes);
            }
            if (!_tickets.TryGetValue(market, out var queue)) _tickets[market] = queue = new Queue<SessionTicket>();
            foreach (var t in stocked.Tickets)
            {
                if (queue.Count < perMarket) queue.Enqueue(t);
                else t.Wipe();
            }
            return (queue.Count, stocked.Handshakes);
        }
    }

    public void RefillInBackground(MarketAddress market)
    {
        int wanted;
        lock (_tickets)
        {
            wanted = _wanted.GetValueOrDefault(market, 1);
            if (!_refilling.Add(market)) return;
        }
        _background.Track(RefillAsync(market, wanted));
    }

    private async Task RefillAsync(MarketAddress market, int wanted)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await FillAsync(market, wanted, Background, timeout.Token);
        }
        catch (Exception e) when (e is ControlErrorException or OperationCanceledException or IOException or TlsException)
        {
            // A refill only warms the stock: the next command asks the home server itself.
        }
        finally
        {
            lock (_tickets) _refilling.Remove(market);
        }
    }

    /// <summary>
    /// Forgets the tickets stocked for <paramref name="market"/> (the market refused one: its ticket keys
    /// changed); a fill for it on its way is not kept either, and other markets' are. Returns how many went.
    /// </summary>
    public int Drop(MarketAddress market)
    {
        lock (_tickets)
        {
            _dropped[market] = _dropped.GetValueOrDefault(market) + 1;
            if (!_tickets.Remove(market, out var queue)) return 0;
            var dropped = queue.Count;
            while (queue.TryDequeue(out var t)) t.Wipe();
            return dropped;
        }
    }

    /// <summary>Forgets every stocked ticket now (their PSKs are wiped).</summary>
    public void Drop()
    {
        lock (_tickets)
        {
            _generation++;
            foreach (var queue in _tickets.Values)
            {
                while (queue.TryDequeue(out var t)) t.Wipe();
            }
            _tickets.Clear();
            _wanted.Clear();
        }
    }

    public Task WhenIdleAsync() => _background.WhenAll();
}
