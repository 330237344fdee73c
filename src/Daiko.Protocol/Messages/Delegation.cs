using Daiko.Protocol.Codecs;
using Daiko.Protocol.Wire;
using Daiko.Tls;

namespace Daiko.Protocol.Messages;

/// <summary><c>delegate</c>: reach <see cref="Market"/> for this terminal in <see cref="Mode"/> (auto: the home server picks).</summary>
/// <param name="Fresh">
/// The market refused a ticket the home server handed over for it (its ticket keys changed): the
/// tickets held for this device and market are dropped before the request is served, so a resume
/// gets a ticket from a new full handshake and an auto or handoff leaves no stale ticket behind.
/// Sent only when set (<c>fresh: true</c>); a request without it is served from the cache as before.
/// </param>
public sealed record DelegateRequest(MarketAddress Market, DelegationMode Mode, bool Fresh = false) : ControlMessage
{
    public const string WireType = "delegate";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        Market.Write(w);
        w.Text("mode", Mode.ToWire());
        if (Fresh) w.Bool("fresh", true);
    }

    internal static DelegateRequest Read(FieldReader r) => new(MarketAddress.Read(r), r.Choice("mode", WireNames.Modes), r.BoolOr("fresh", false));
}

/// <summary><c>ticket</c> (resume): a single-use session ticket with its PSK.</summary>
public sealed record TicketReply(SessionTicket Ticket) : ControlReply
{
    public const string WireType = "ticket";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Bytes("ticket", SessionTicketCodec.Encode(Ticket));

    internal static TicketReply Read(FieldReader r) => new(r.Embedded("ticket", 16 * 1024, "a session ticket", SessionTicketCodec.Decode));
}

/// <summary><c>secrets</c> (handoff): the live session's secrets and the relay that splices the market's TCP stream.</summary>
public sealed record SecretsReply(ExportedSession Session, long Relay) : ControlReply
{
    public const string WireType = "secrets";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Bytes("session", ExportedSessionCodec.Encode(Session));
        w.Int("relay", Relay);
    }

    internal static SecretsReply Read(FieldReader r) =>
        new(r.Embedded("session", 256 * 1024, "an exported session", ExportedSessionCodec.Decode), r.Int("relay", 1));
}

/// <summary><c>relay</c> (relay mode): the relay that carries the plaintext of the home server's session.</summary>
public sealed record RelayReply(long Relay) : ControlReply
{
    public const string WireType = "relay";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Int("relay", Relay);

    internal static RelayReply Read(FieldReader r) => new(r.Int("relay", 1));
}

/// <summary><c>assist</c>: the user's certificate chain; the terminal then sends sign and verify-chain.</summary>
public sealed record AssistReply(IReadOnlyList<byte[]> Chain) : ControlReply
{
    public const string WireType = "assist";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.BytesList("chain", Chain.ToList());

    internal static AssistReply Read(FieldReader r) => new(r.BytesList("chain", ControlProtocol.MaxChainLength, ControlProtocol.MaxCertificateBytes));
}

/// <summary><c>prefetch</c>: have at least <see cref="Minimum"/> tickets ready for (device, market); 0 only reports.</summary>
public sealed record PrefetchRequest(MarketAddress Market, int Minimum = 1) : ControlMessage
{
    public const string WireType = "prefetch";

    public const int MaxTickets = 8;

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        Market.Write(w);
        w.Int("min", Minimum);
    }

    internal static PrefetchRequest Read(FieldReader r) => new(MarketAddress.Read(r), (int)r.IntOr("min", 1, 0, MaxTickets));
}

/// <summary><c>prefetched</c>: tickets ready for this device and market, and handshakes run now.</summary>
public sealed record PrefetchedReply(int Ready, int Handshakes) : ControlReply
{
    public const string WireType = "prefetched";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("ready", Ready);
        w.Int("handshakes", Handshakes);
    }

    internal static PrefetchedReply Read(FieldReader r) => new(r.Int32("ready", 0, 1000), r.Int32("handshakes", 0, 1000));
}

/// <summary>
/// <c>sign</c> (assist): the home card signs a TLS 1.3 client CertificateVerify for the handshake in
/// <see cref="Transcript"/> (its messages from the first ClientHello through the client's Certificate,
/// which the home server checks and hashes itself; <see cref="Content"/> must be what it computes), or a
/// whole TLS 1.2 client handshake in <see cref="Content"/> that the home server checked; nothing else.
/// <see cref="Transcript"/> is absent for TLS 1.2 (and from terminals older than it: their TLS 1.3 content is refused).
/// </summary>
public sealed record SignRequest(SignatureScheme Scheme, byte[] Content, byte[]? Transcript = null) : ControlMessage
{
    public const string WireType = "sign";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Int("scheme", (int)Scheme);
        w.Bytes("content", Content);
        if (Transcript is not null) w.Bytes("transcript", Transcript);
    }

    internal static SignRequest Read(FieldReader r) => new((SignatureScheme)r.Int32("scheme", 0, ushort.MaxValue), r.Bytes("content", ControlProtocol.MaxSignContentBytes),
        r.Has("transcript") || r.Truncated ? r.Bytes("transcript", ControlProtocol.MaxSignTranscriptBytes) : null);
}

/// <summary><c>signature</c>: the card's signature.</summary>
public sealed record SignatureReply(byte[] Signature) : ControlReply
{
    public const string WireType = "signature";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Bytes("signature", Signature);

    internal static SignatureReply Read(FieldReader r) => new(r.Bytes("signature", 1024));
}

/// <summary><c>verify-chain</c> (assist): the home server's verdict on a market's chain.</summary>
public sealed record VerifyChainRequest(string? Host, IReadOnlyList<byte[]> Chain) : ControlMessage
{
    public const string WireType = "verify-chain";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.TextOrNull("host", Host);
        w.BytesList("chain", Chain.ToList());
    }

    internal static VerifyChainRequest Read(FieldReader r) =>
        new(r.TextOrNull("host", ControlProtocol.MaxHostLength) is { } host ? MarketAddress.HostName(r, "host", host) : null,
            r.BytesList("chain", ControlProtocol.MaxChainLength, ControlProtocol.MaxCertificateBytes));
}

/// <summary><c>verdict</c>: whether the chain is trusted, and if not, the problem and a sentence.</summary>
public sealed record VerdictReply(bool Trusted, CertificateProblem Problem, string? Reason) : ControlReply
{
    public const string WireType = "verdict";

    private static readonly IReadOnlyDictionary<string, CertificateProblem> Problems =
        Enum.GetValues<CertificateProblem>().ToDictionary(p => p.ToString(), StringComparer.Ordinal);

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Bool("trusted", Trusted);
        w.Text("problem", Problem.ToString());
        w.TextOrNull("reason", Reason);
    }

    internal static VerdictReply Read(FieldReader r) => new(r.Bool("trusted"), r.Choice("problem", Problems), r.TextOrNull("reason", 4096));
}
