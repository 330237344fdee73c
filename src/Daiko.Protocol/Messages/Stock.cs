using Daiko.Protocol.Codecs;
using Daiko.Protocol.Wire;
using Daiko.Tls;

namespace Daiko.Protocol.Messages;

/// <summary>
/// <c>stock</c> (terminal agent → home server): hand over up to <see cref="Count"/> session tickets for
/// <see cref="Market"/>, to be kept in the agent's memory and used without asking again. The home
/// server audits every ticket it hands over and bounds the count.
/// </summary>
public sealed record StockRequest(MarketAddress Market, int Count) : ControlMessage
{
    public const string WireType = "stock";

    /// <summary>The most tickets one request may ask for (and the agent keeps per market by default: <see cref="DefaultPerMarket"/>).</summary>
    public const int MaxTickets = 8;

    public const int DefaultPerMarket = 4;

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        Market.Write(w);
        w.Int("count", Count);
    }

    internal static StockRequest Read(FieldReader r) => new(MarketAddress.Read(r), r.Int32("count", 1, MaxTickets));
}

/// <summary><c>stocked</c>: the tickets handed over (each single-use), and the full handshakes the home server ran for them now.</summary>
public sealed record StockedReply(IReadOnlyList<SessionTicket> Tickets, int Handshakes) : ControlReply
{
    public const string WireType = "stocked";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.BytesList("tickets", Tickets.Select(SessionTicketCodec.Encode).ToList());
        w.Int("handshakes", Handshakes);
    }

    internal static StockedReply Read(FieldReader r)
    {
        var encoded = r.BytesList("tickets", StockRequest.MaxTickets, 16 * 1024);
        var tickets = new List<SessionTicket>(encoded.Count);
        foreach (var bytes in encoded)
        {
            try
            {
                tickets.Add(SessionTicketCodec.Decode(bytes));
            }
            catch (FormatException)
            {
                throw new ProtocolException("field 'tickets' of 'stocked' holds an invalid session ticket", "tickets");
            }
        }
        return new StockedReply(tickets, r.Int32("handshakes", 0, 1000));
    }
}

/// <summary>
/// <c>drop-tickets</c> (home server → terminal agent, id 0, never answered): forget every stocked
/// ticket now (the home card was locked, the device revoked, or its policy changed).
/// </summary>
public sealed record DropTicketsNotice(string Reason) : ControlMessage
{
    public const string WireType = "drop-tickets";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Text("reason", Reason);

    internal static DropTicketsNotice Read(FieldReader r) => new(r.Text("reason", 4096));
}

/// <summary>
/// <c>cost</c> (CLI → terminal agent, on the local socket only): what this local connection cost on the
/// control channel so far.
/// </summary>
public sealed record CostRequest : ControlMessage
{
    public const string WireType = "cost";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
    }

    internal static CostRequest Read(FieldReader r) => new();
}

/// <summary>
/// <c>cost</c> reply: bytes on the wire of the control channel (TLS records, handshakes included),
/// round trips on it and public-key operations the agent ran for this local connection.
/// </summary>
public sealed record CostReply(long BytesSent, long BytesReceived, long RoundTrips, long PublicKeyOperations) : ControlReply
{
    public const string WireType = "cost";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("bytes_sent", BytesSent);
        w.Int("bytes_received", BytesReceived);
        w.Int("round_trips", RoundTrips);
        w.Int("public_key_ops", PublicKeyOperations);
    }

    internal static CostReply Read(FieldReader r) =>
        new(r.Int("bytes_sent", 0), r.Int("bytes_received", 0), r.Int("round_trips", 0), r.Int("public_key_ops", 0));
}
