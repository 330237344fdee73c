namespace Daiko.Protocol;

/// <summary>
/// The control protocol's version and limits. The version is negotiated by ALPN on the control
/// channel's TLS handshake: a terminal and a home server that share no version fail with a sentence
/// that says so (<see cref="ErrorCode.ProtocolVersion"/>), never with a parse failure.
/// </summary>
public static class ControlProtocol
{
    /// <summary>The ALPN name of this version of the control protocol.</summary>
    public const string Alpn = "daiko/1";

    /// <summary>The largest frame body (the CBOR map), in bytes.</summary>
    public const int MaxFrameBytes = 1 << 20;

    /// <summary>What a paged reply (PIM sync, wallet history) carries at most before it says "more".</summary>
    public const int PageBytes = 256 * 1024;

    /// <summary>The largest relay-data chunk, in bytes.</summary>
    public const int MaxRelayChunk = 64 * 1024;

    /// <summary>Bytes one connection holds from its peer before it stops reading (relay data not yet consumed, requests being handled).</summary>
    public const int MaxBufferedBytes = 1 << 20;

    /// <summary>Requests of one connection handled at once; the next frame is read when one finishes.</summary>
    public const int MaxRequestsInFlight = 32;

    /// <summary>The largest frame a peer without a device certificate may send (it may only enroll).</summary>
    public const int MaxUnauthenticatedFrameBytes = 16 * 1024;

    /// <summary>Data frames kept for a relay whose opening reply is still on its way.</summary>
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
