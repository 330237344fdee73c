namespace Daiko.Protocol;

/// <summary>
/// The control protocol's versions and limits. The version is negotiated by ALPN on the control
/// channel's TLS handshake: a terminal and a home server that share no version fail with a sentence
/// that says so (<see cref="ErrorCode.ProtocolVersion"/>), never with a parse failure.
/// </summary>
public static class ControlProtocol
{
    /// <summary>
    /// The ALPN name of the newest version of the control protocol: daiko/1 with a receive window per
    /// relay direction (<see cref="RelayWindowBytes"/>, granted back in <c>relay-window</c> frames).
    /// </summary>
    public const string Alpn = "daiko/2";

    /// <summary>The first version, still spoken: relay data is bounded only by the connection's read budget.</summary>
    public const string Alpn1 = "daiko/1";

    /// <summary>The versions this build speaks, the preferred first (the order a terminal offers them and a home server picks).</summary>
    public static IReadOnlyList<string> Versions { get; } = [Alpn, Alpn1];

    /// <summary>Whether <paramref name="version"/> gives each relay direction a window (daiko/2).</summary>
    public static bool HasRelayWindows(string version) => version == Alpn;

    /// <summary>
    /// What a relay's sender may have unacknowledged per relay, in daiko/2: four relay-data chunks. The
    /// receiver grants back what its reader took once that reaches half the window, so a sender that keeps
    /// the window full moves 256 KiB a round trip (about 40 Mbit/s at 50 ms). A home server keeps at most
    /// 64 relays for a device, so what one device can make it hold of relay data is bounded by 16 MiB.
    /// </summary>
    public const int RelayWindowBytes = 256 * 1024;

    /// <summary>The largest frame body (the CBOR map), in bytes.</summary>
    public const int MaxFrameBytes = 1 << 20;

    /// <summary>What a paged reply (PIM sync, wallet history) carries at most before it says "more".</summary>
    public const int PageBytes = 256 * 1024;

    /// <summary>The largest relay-data chunk, in bytes.</summary>
    public const int MaxRelayChunk = 64 * 1024;

    /// <summary>Bytes one connection holds from its peer before it stops reading (requests being handled, and in daiko/1 relay data not yet consumed).</summary>
    public const int MaxBufferedBytes = 1 << 20;

    /// <summary>Requests of one connection handled at once; the next frame is read when one finishes.</summary>
    public const int MaxRequestsInFlight = 32;

    /// <summary>The largest frame a peer without a device certificate may send (it may only enroll).</summary>
    public const int MaxUnauthenticatedFrameBytes = 16 * 1024;

    /// <summary>Data frames kept for a relay whose opening reply is still on its way (in daiko/2 their bytes count against the relay's window too).</summary>
    public const int MaxEarlyRelayFrames = 256;

    internal const int MaxHostLength = 253;
    internal const int MaxAlpnLength = 255;
    internal const int MaxPinLength = 128;
    internal const int MaxNameLength = 256;
    internal const int MaxTextLength = 64 * 1024;
    internal const int MaxListItems = 10_000;
    internal const int MaxCertificateBytes = 64 * 1024;
    internal const int MaxChainLength = 16;
    /// <summary>TLS 1.3 CertificateVerify content is at most 162 bytes, but a whole TLS 1.2 client handshake (assist) carries both chains: only the frame bounds it; the home server checks what it is.</summary>
    internal const int MaxSignContentBytes = MaxFrameBytes;
    /// <summary>
    /// The TLS 1.3 handshake a <c>sign</c> carries (assist): hellos, the market's chain and the owner's. Four of
    /// the largest handshake message the engine accepts (128 KiB), so any handshake it completes fits with room;
    /// the frame (1 MiB) bounds the whole request.
    /// </summary>
    internal const int MaxSignTranscriptBytes = 512 * 1024;

    /// <summary>The largest money message (payment, refill, cancellation, confirmation) the protocol carries.</summary>
    public const int MaxMoneyMessageBytes = 64 * 1024;
}
